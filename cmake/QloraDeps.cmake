# Third-party dependencies. libtorch comes from the Python torch wheel unless the user points
# Torch_DIR / CMAKE_PREFIX_PATH at another one (Colab users build against the torch they have).
if(NOT Torch_DIR)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_torch_prefix)
      list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
    endif()
  endif()
endif()

# A CUDA-enabled torch wheel looks for the CUDA toolkit; without nvcc on PATH point it at the default one.
if(NOT CUDAToolkit_ROOT AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CUDAToolkit_ROOT /usr/local/cuda)
endif()
# torch's config appends its gencode flags to CMAKE_CUDA_FLAGS and turns CMAKE_CUDA_ARCHITECTURES
# off; kernels/ does not use torch, so keep our own settings for it.
set(_qlora_cuda_flags "${CMAKE_CUDA_FLAGS}")
unset(CMAKE_CUDA_ARCHITECTURES)
unset(CMAKE_CUDA_ARCHITECTURES CACHE)
find_package(Torch REQUIRED)
set(CMAKE_CUDA_FLAGS "${_qlora_cuda_flags}")
if(QLORA_WITH_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES ${QLORA_CUDA_ARCHITECTURES})
endif()
message(STATUS "qlora: libtorch ${Torch_VERSION} from ${Torch_DIR}")

find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
# utf8proc: Unicode NFC normalisation and general categories (Vietnamese text, MLQA punctuation).
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
if(QLORA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
