# cmake -P script: build a consumer project (tests/install/consumer, or an example) against
# trident (MODE = find_package or add_subdirectory) in WORK_DIR and run its EXECUTABLE
# (default: consumer) on 2 ranks with RUN_ARGS (a ;-list), compiled and linked with
# CONSUMER_FLAGS when given (the sanitizers).
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "step failed (${status}): ${ARGV}\n${out}\n${err}")
  endif()
  message("${out}")
endfunction()

set(configure_args -S "${CONSUMER_DIR}" -B "${WORK_DIR}/build" -DCMAKE_BUILD_TYPE=Release
                   -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DKokkos_DIR=${KOKKOS_DIR}
                   -DKokkosKernels_DIR=${KOKKOSKERNELS_DIR})
if(CONSUMER_FLAGS)
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=${CONSUMER_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${CONSUMER_FLAGS}")
endif()
if(MODE STREQUAL "find_package")
  run_step(${CMAKE_COMMAND} --install "${TRIDENT_BINARY_DIR}" --prefix "${WORK_DIR}/prefix")
  if(NOT EXISTS "${WORK_DIR}/prefix/include/trident/trident.hpp")
    message(FATAL_ERROR "the install did not place include/trident/trident.hpp")
  endif()
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
else()
  list(APPEND configure_args "-DTRIDENT_SOURCE_DIR=${TRIDENT_SOURCE_DIR}")
endif()
run_step(${CMAKE_COMMAND} ${configure_args})
run_step(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
separate_arguments(flags UNIX_COMMAND "${MPIEXEC_FLAGS}")
if(NOT EXECUTABLE)
  set(EXECUTABLE consumer)
endif()
run_step(${MPIEXEC} -n 2 ${flags} "${WORK_DIR}/build/${EXECUTABLE}" ${RUN_ARGS})
