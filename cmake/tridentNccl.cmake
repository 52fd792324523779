# The NCCL communicator backend (include/trident/comm/nccl.hpp) for CUDA builds.
#   TRIDENT_ENABLE_NCCL=AUTO (default): on when Kokkos has CUDA and NCCL is found
#                       ON: required (an error names what is missing); OFF: never
# NCCL is looked for under NCCL_ROOT and the CUDA toolkit (which ships it in recent releases).
# Sets TRIDENT_NCCL_ENABLED, and TRIDENT_COMM_BACKENDS: the backends the tests run over.
set(TRIDENT_ENABLE_NCCL AUTO CACHE STRING "Build the NCCL communicator backend: AUTO, ON or OFF")
set_property(CACHE TRIDENT_ENABLE_NCCL PROPERTY STRINGS AUTO ON OFF)

set(TRIDENT_NCCL_ENABLED OFF)
set(TRIDENT_COMM_BACKENDS mpi)
if(NOT TRIDENT_ENABLE_NCCL STREQUAL "OFF")
  set(_trident_nccl_missing "")
  if(NOT Kokkos_ENABLE_CUDA)
    set(_trident_nccl_missing "Kokkos was built without CUDA")
  else()
    find_package(CUDAToolkit QUIET)
    set(_trident_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
    find_path(TRIDENT_NCCL_INCLUDE_DIR nccl.h HINTS ${_trident_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
              PATH_SUFFIXES include)
    find_library(TRIDENT_NCCL_LIBRARY nccl HINTS ${_trident_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
                 PATH_SUFFIXES lib lib64)
    if(NOT TRIDENT_NCCL_INCLUDE_DIR OR NOT TRIDENT_NCCL_LIBRARY)
      set(_trident_nccl_missing "nccl.h or libnccl was not found (set NCCL_ROOT)")
    endif()
  endif()
  if(_trident_nccl_missing STREQUAL "")
    set(TRIDENT_NCCL_ENABLED ON)
    list(APPEND TRIDENT_COMM_BACKENDS nccl)
    message(STATUS "trident: NCCL backend on (${TRIDENT_NCCL_LIBRARY})")
  elseif(TRIDENT_ENABLE_NCCL STREQUAL "ON")
    message(FATAL_ERROR "trident: TRIDENT_ENABLE_NCCL=ON, but ${_trident_nccl_missing}")
  else()
    message(STATUS "trident: NCCL backend off: ${_trident_nccl_missing}")
  endif()
endif()

# Consumers of the trident target get the backend with it (the CUDA runtime comes with Kokkos).
function(trident_link_nccl target)
  if(TRIDENT_NCCL_ENABLED)
    target_compile_definitions(${target} INTERFACE TRIDENT_ENABLE_NCCL)
    target_include_directories(${target} SYSTEM INTERFACE ${TRIDENT_NCCL_INCLUDE_DIR})
    target_link_libraries(${target} INTERFACE ${TRIDENT_NCCL_LIBRARY})
  endif()
endfunction()
