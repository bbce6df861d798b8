/* ref_f64.c - the reference ops in double: for finite-difference gradient checks. */
#define T double
#define SFX f64
#include "ops/ref_template.inc"
