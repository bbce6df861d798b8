/* ref_f32.c - the reference ops in float: what the library runs. */
#define T float
#define SFX f32
#include "ops/ref_template.inc"
