/* whisker.h - the public interface of libwhisker.
 *
 * whisker is a convolutional image classifier library. Everything that can fail
 * because of its input returns a wk_status; wk_last_error() then holds a message
 * naming what failed (a file, a shape, a parameter). The library never exits the
 * process: only the command-line program decides that.
 *
 * Ops, tensors and the execution context are declared in the headers under
 * core/ and ops/, images and the data pipeline under image/ and data/; this
 * header is the stable entry point that includes them. */
#ifndef WHISKER_H
#define WHISKER_H

#include "core/status.h"
#include "core/log.h"
#include "core/tensor.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "core/context.h"
#include "ops/ops.h"
#include "image/image.h"
#include "image/resize.h"
#include "data/dataset.h"
#include "data/augment.h"
#include "data/loader.h"

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *wk_version(void);

#endif
