# Helpers shared by src/ and tests/.
set(QLORA_WARNINGS -Wall -Wextra -Wno-unused-parameter)

# One precompiled header for every target that includes torch; others reuse it.
add_library(qlora_torch_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch_anchor.cpp)
target_link_libraries(qlora_torch_pch PUBLIC torch)
if(QLORA_USE_PCH)
  target_precompile_headers(qlora_torch_pch PRIVATE <ATen/ATen.h> <torch/types.h> <string> <vector>)
endif()

# qlora_add_library(NAME DIR [TORCH] [DEPS ...]): a static library of every .cpp under src/DIR.
function(qlora_add_library name dir)
  cmake_parse_arguments(ARG "TORCH" "" "DEPS" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${dir}/*.cpp)
  if(NOT srcs)  # A concern with no sources yet is header-only.
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
    return()
  endif()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(${name} PRIVATE ${QLORA_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    target_link_libraries(${name} PUBLIC torch)
    if(QLORA_USE_PCH)
      target_precompile_headers(${name} REUSE_FROM qlora_torch_pch)
    endif()
  endif()
endfunction()

# qlora_add_test(NAME DIR [TORCH] DEPS ...): one gtest executable of every test_*.cpp under tests/DIR.
function(qlora_add_test name dir)
  cmake_parse_arguments(ARG "TORCH" "" "DEPS" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/${dir}/test_*.cpp)
  if(NOT srcs)
    return()
  endif()
  add_executable(${name} ${srcs})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_options(${name} PRIVATE ${QLORA_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    QLORA_FIXTURES_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures"
    QLORA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  if(ARG_TORCH AND QLORA_USE_PCH)
    target_precompile_headers(${name} REUSE_FROM qlora_torch_pch)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 120 PROPERTIES LABELS ${dir})
endfunction()
