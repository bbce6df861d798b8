/* version.c - the library version, set by the build from CMake's project(). */
#include "whisker.h"

const char *wk_version(void) { return WHISKER_VERSION_STRING; }
