# Use ccache for C++ and CUDA when it is installed: rebuilds on 2 cores are otherwise slow.
find_program(QLORA_CCACHE ccache)
if(QLORA_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${QLORA_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${QLORA_CCACHE})
  message(STATUS "qlora: using ccache (${QLORA_CCACHE})")
endif()
