/* cuda_runtime_api.h (kernel emulator): the same as cuda_runtime.h here. */
#include "cuda_runtime.h"
