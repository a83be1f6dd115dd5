// OpenBLAS's CBLAS interface plus LAPACKE (a separate library on Debian).
#ifndef GRADMAP_CBLAS_SHIM_H
#define GRADMAP_CBLAS_SHIM_H
#include <cblas.h>
#include <lapacke.h>
#endif
