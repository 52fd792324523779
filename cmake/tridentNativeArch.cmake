# trident_native_arch_flags(OUT): the flags that compile for the build machine's CPU, or none
# when the compiler lacks -march=native or Kokkos already names a target architecture (a Kokkos
# built with Kokkos_ARCH_* passes its own -march to everything that links it).
include(CheckCXXCompilerFlag)

function(trident_native_arch_flags out)
  set(flags "")
  get_target_property(kokkos_options Kokkos::kokkos INTERFACE_COMPILE_OPTIONS)
  if(kokkos_options AND "${kokkos_options}" MATCHES "-march=|-mcpu=|-xHost|-xCORE")
    message(STATUS "trident: Kokkos sets the target architecture; TRIDENT_NATIVE_ARCH adds nothing")
  else()
    check_cxx_compiler_flag(-march=native TRIDENT_HAS_MARCH_NATIVE)
    if(TRIDENT_HAS_MARCH_NATIVE)
      set(flags -march=native)
    else()
      message(STATUS "trident: the compiler does not take -march=native; TRIDENT_NATIVE_ARCH adds nothing")
    endif()
  endif()
  set(${out} "${flags}" PARENT_SCOPE)
endfunction()
