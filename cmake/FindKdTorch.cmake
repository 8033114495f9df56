# Locates LibTorch from the PyPI torch wheel.
#
# Two paths, chosen automatically:
#   * CUDA path: a CUDA toolkit is found -> find_package(Torch) through the wheel's
#     cmake prefix; targets link torch (CPU + CUDA) and KDBENCH_WITH_CUDA=1.
#   * CPU path: no toolkit (most users) -> find_package(Torch) would fail with
#     "Caffe2 uses CUDA but I cannot find the CUDA libraries", so we link the
#     wheel's libtorch, libtorch_cpu and libc10 with its two include folders.
# Result: imported target kd::torch.
set(KDBENCH_PYTHON "" CACHE FILEPATH "Python interpreter that has the torch wheel")
set(KDBENCH_FORCE_CPU OFF CACHE BOOL "Ignore a CUDA toolkit and build the CPU path")
if(NOT KDBENCH_PYTHON)
  if(DEFINED ENV{KDBENCH_VENV} AND EXISTS "$ENV{KDBENCH_VENV}/bin/python")
    set(KDBENCH_PYTHON "$ENV{KDBENCH_VENV}/bin/python")
  elseif(EXISTS "$ENV{HOME}/.cache/kdbench/venv/bin/python")
    set(KDBENCH_PYTHON "$ENV{HOME}/.cache/kdbench/venv/bin/python")
  else()
    find_program(KDBENCH_PYTHON NAMES python3 python REQUIRED)
  endif()
endif()
execute_process(
  COMMAND "${KDBENCH_PYTHON}" -c "import torch, os; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
  OUTPUT_VARIABLE _kd_torch_out RESULT_VARIABLE _kd_torch_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _kd_torch_rc EQUAL 0)
  message(FATAL_ERROR "kdbench: no torch wheel importable by ${KDBENCH_PYTHON}. Run scripts/setup first.")
endif()
string(REPLACE "\n" ";" _kd_torch_out "${_kd_torch_out}")
list(GET _kd_torch_out 0 KDBENCH_TORCH_DIR)
list(GET _kd_torch_out 1 KDBENCH_TORCH_VERSION)
list(GET _kd_torch_out 2 _kd_abi)
message(STATUS "kdbench: torch ${KDBENCH_TORCH_VERSION} at ${KDBENCH_TORCH_DIR}")

set(KDBENCH_WITH_CUDA OFF)
if(NOT KDBENCH_FORCE_CPU)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    list(APPEND CMAKE_PREFIX_PATH "${KDBENCH_TORCH_DIR}/share/cmake")
    # Caffe2's config looks for nvcc through CUDA_TOOLKIT_ROOT_DIR / CUDACXX.
    if(NOT DEFINED CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE)
      set(CMAKE_CUDA_COMPILER "${CUDAToolkit_NVCC_EXECUTABLE}")
    endif()
    find_package(Torch QUIET)
    if(Torch_FOUND)
      set(KDBENCH_WITH_CUDA ON)
    else()
      message(STATUS "kdbench: CUDA toolkit found but find_package(Torch) failed; using the CPU path")
    endif()
  endif()
endif()

add_library(kd::torch INTERFACE IMPORTED GLOBAL)
if(KDBENCH_WITH_CUDA)
  message(STATUS "kdbench: CUDA path (toolkit ${CUDAToolkit_VERSION})")
  target_link_libraries(kd::torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(kd::torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
  target_compile_definitions(kd::torch INTERFACE KDBENCH_WITH_CUDA=1)
else()
  message(STATUS "kdbench: CPU path (no CUDA toolkit used)")
  set(_lib "${KDBENCH_TORCH_DIR}/lib")
  target_include_directories(kd::torch SYSTEM INTERFACE
    "${KDBENCH_TORCH_DIR}/include" "${KDBENCH_TORCH_DIR}/include/torch/csrc/api/include")
  target_link_libraries(kd::torch INTERFACE
    "-Wl,--no-as-needed" "${_lib}/libtorch.so" "${_lib}/libtorch_cpu.so" "${_lib}/libc10.so" "-Wl,--as-needed")
  target_compile_definitions(kd::torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_kd_abi})
  set_property(TARGET kd::torch APPEND PROPERTY INTERFACE_LINK_OPTIONS "-Wl,-rpath,${_lib}")
endif()
