# trident_add_test(NAME <name> SOURCES <files...> [RANKS <n...>] [TIMEOUT <s>] [EVERY_COMM_BACKEND])
# Builds one test executable (Catch2 with trident's MPI+Kokkos main) and registers it with
# CTest once per rank count, as <name>_np<N>. Ranks are oversubscribed: the suite must run
# on a laptop or a 2-core CI machine. EVERY_COMM_BACKEND registers it again for each other
# communicator backend the build has (TRIDENT_COMM_BACKENDS), as <name>_<backend>_np<N> with
# TRIDENT_COMM_BACKEND=<backend>; NCCL needs a GPU per rank, so its runs stop at
# TRIDENT_TEST_GPUS ranks.
find_package(Catch2 REQUIRED)

set(TRIDENT_TEST_MAX_RANKS 8 CACHE STRING "Largest rank count a test is registered with")
set(TRIDENT_TEST_GPUS 1 CACHE STRING "GPUs the tests' node has: NCCL runs are registered up to this many ranks")
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _trident_mpiexec_version ERROR_QUIET)
if(_trident_mpiexec_version MATCHES "Open MPI|OpenRTE")
  # mpi_yield_when_idle keeps busy-polling ranks from starving each other when oversubscribed.
  set(_trident_default_mpiexec_flags --oversubscribe --mca mpi_yield_when_idle 1)
else()
  set(_trident_default_mpiexec_flags "")
endif()
set(TRIDENT_MPIEXEC_FLAGS "${_trident_default_mpiexec_flags}" CACHE STRING "Flags passed to mpiexec for tests")
# Threads per rank for an OpenMP (or Threads) backend; ranks are oversubscribed, so OpenMP
# workers wait passively instead of spinning.
set(TRIDENT_TEST_OMP_THREADS 1 CACHE STRING "OMP_NUM_THREADS of every test rank")

add_library(trident_test_main STATIC ${PROJECT_SOURCE_DIR}/tests/test_main.cpp)
target_link_libraries(trident_test_main PUBLIC trident::trident Catch2::Catch2 trident_own_flags)
target_include_directories(trident_test_main PUBLIC ${PROJECT_SOURCE_DIR}/tests)

function(trident_add_test)
  cmake_parse_arguments(ARG "EVERY_COMM_BACKEND" "NAME;TIMEOUT" "SOURCES;RANKS;LABELS" ${ARGN})
  if(NOT ARG_RANKS)
    set(ARG_RANKS 1)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  # A rank stuck in one of trident's waits reports where (comm/watchdog.hpp) before ctest's
  # timeout kills the job without a word.
  math(EXPR comm_timeout "${ARG_TIMEOUT} * 4 / 5")
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE trident_test_main)
  set(backends mpi)
  if(ARG_EVERY_COMM_BACKEND)
    set(backends ${TRIDENT_COMM_BACKENDS})
  endif()
  foreach(backend IN LISTS backends)
    set(prefix ${ARG_NAME})
    if(NOT backend STREQUAL "mpi")
      set(prefix ${ARG_NAME}_${backend})
    endif()
    foreach(np IN LISTS ARG_RANKS)
      if(np GREATER TRIDENT_TEST_MAX_RANKS OR (backend STREQUAL "nccl" AND np GREATER TRIDENT_TEST_GPUS))
        continue()
      endif()
      add_test(NAME ${prefix}_np${np}
               COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${TRIDENT_MPIEXEC_FLAGS}
                       ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${ARG_NAME}> ${MPIEXEC_POSTFLAGS})
      set_tests_properties(${prefix}_np${np} PROPERTIES
        TIMEOUT ${ARG_TIMEOUT} PROCESSORS 1 LABELS "np${np};${backend};${ARG_LABELS}"
        # Open MPI refuses root unless told; single-threaded BLAS keeps oversubscribed ranks fair.
        ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;OMP_NUM_THREADS=${TRIDENT_TEST_OMP_THREADS};OMP_PROC_BIND=false;OMP_WAIT_POLICY=passive;TRIDENT_COMM_TIMEOUT=${comm_timeout};TRIDENT_COMM_BACKEND=${backend}")
    endforeach()
  endforeach()
endfunction()
