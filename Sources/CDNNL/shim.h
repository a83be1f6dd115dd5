// oneDNN's C API (Debian's libdnnl-dev 2.6, built on OpenMP) and the two libgomp calls that set and read the
// number of threads its products use; libgomp is linked directly so these resolve without a dlsym.
#ifndef GRADMAP_CDNNL_SHIM_H
#define GRADMAP_CDNNL_SHIM_H
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

void omp_set_num_threads(int n);
int omp_get_max_threads(void);
#endif
