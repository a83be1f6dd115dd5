// Open MPI's handles are macros over global symbols, which Swift cannot import; these getters expose them.
#ifndef GRADMAP_CMPI_SHIM_H
#define GRADMAP_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm gm_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype gm_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype gm_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype gm_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype gm_byte(void) { return MPI_BYTE; }
static inline MPI_Op gm_op_sum(void) { return MPI_SUM; }
static inline void *gm_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *gm_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler gm_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int gm_success(void) { return MPI_SUCCESS; }
static inline int gm_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
#endif
