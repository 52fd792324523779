# Finds trident's dependencies and gives every Kokkos install the same two targets:
#   Kokkos::kokkos        (Kokkos core)
#   Kokkos::kokkoskernels (Kokkos Kernels)
# Kokkos 4.x installs provide both and are used untouched. Debian's TriBITS-built
# Kokkos 3.4 needs two repairs: its Kokkos::kokkos lists <prefix>/include, which does not
# exist (the headers are in Kokkos_INCLUDE_DIRS), and Kokkos Kernels has no target at all
# (only KokkosKernels_LIBRARIES).
include(CMakeFindDependencyMacro)

# Inside tridentConfig.cmake a missing dependency makes find_package(trident) fail politely;
# in trident's own build it is a hard error.
macro(_trident_find_dependency)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "trident")
    find_dependency(${ARGV})
  else()
    find_package(${ARGV} REQUIRED)
  endif()
endmacro()

_trident_find_dependency(MPI COMPONENTS CXX)
_trident_find_dependency(nlohmann_json)
_trident_find_dependency(Kokkos)
_trident_find_dependency(KokkosKernels)

if(TARGET Kokkos::kokkos)
  get_target_property(_trident_kokkos_includes Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
  if(_trident_kokkos_includes)
    set(_trident_existing "")
    set(_trident_repaired FALSE)
    foreach(_dir IN LISTS _trident_kokkos_includes)
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _trident_existing "${_dir}")
      else()
        set(_trident_repaired TRUE)
      endif()
    endforeach()
    if(_trident_repaired)
      list(APPEND _trident_existing ${Kokkos_INCLUDE_DIRS})
      list(REMOVE_DUPLICATES _trident_existing)
      set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_trident_existing}")
    endif()
  endif()
else()
  message(FATAL_ERROR "trident: find_package(Kokkos) gave no Kokkos::kokkos target")
endif()

if(NOT TARGET Kokkos::kokkoskernels)
  if(NOT KokkosKernels_LIBRARIES)
    message(FATAL_ERROR "trident: Kokkos Kernels provides neither Kokkos::kokkoskernels nor KokkosKernels_LIBRARIES")
  endif()
  add_library(Kokkos::kokkoskernels INTERFACE IMPORTED)
  set_target_properties(Kokkos::kokkoskernels PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${KokkosKernels_INCLUDE_DIRS}"
    INTERFACE_LINK_LIBRARIES "${KokkosKernels_LIBRARIES};${KokkosKernels_TPL_LIBRARIES};Kokkos::kokkos")
endif()
