#!/usr/bin/env bash
# Builds the llama.cpp peer of `npm run bench -- llama` (bench/peers/llama_cpp.py) and packs it as a tarball:
# llama-bench, llama-batched-bench and llama-quantize with their shared libraries, CUDA for sm_90a only (H100/H200),
# the CUDA runtime linked statically, cuBLAS (libcublas.so.13) and the driver (libcuda.so.1) loaded from the machine
# that runs it. Where this machine has no cuBLAS (a CUDA toolkit without it), link-time stubs of both stand in:
# give the cuBLAS headers (cublas_v2.h, cublas_api.h of CUDA 13) in CUBLAS_INC; they are used for this build only.
#
# ggml-cuda is slimmed for a Llama-only benchmark (LLAMA_SLIM=1, the default): FlashAttention kernels for head sizes
# 64 and 128 only (others report FlashAttention as unsupported), F16 K/V only (GGML_CUDA_FA_QUANTS=f16-f16), and MMQ
# kernels for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K only (other types fall back to dequantization + cuBLAS).
#
#   BUNDLE=/path/gitRelease.bundle CUBLAS_INC=/tmp/cublas-inc OUT=.peer/llama-cpp.tar.xz bench/peers/build_llama_cpp.sh
# Optional: SRC (/tmp/llama.cpp), BUILD (/tmp/llama-build), STUBS (/tmp/llama-stubs), JOBS (nproc), ARCHS (90a-real),
# COMMIT (de3ff815ea7d559ee917f063901b8986f038abc6, checked against the bundle), NICE (19), STEP (all | build | pack).
set -euo pipefail

BUNDLE=${BUNDLE:-/tmp/nlc/package/llama/gitRelease.bundle}
SRC=${SRC:-/tmp/llama.cpp}
BUILD=${BUILD:-/tmp/llama-build}
STUBS=${STUBS:-/tmp/llama-stubs}
CUBLAS_INC=${CUBLAS_INC:-}
OUT=${OUT:-$(pwd)/.peer/llama-cpp.tar.xz}
JOBS=${JOBS:-$(nproc)}
ARCHS=${ARCHS:-90a-real}
COMMIT=${COMMIT:-de3ff815ea7d559ee917f063901b8986f038abc6}
NICE=${NICE:-19}
STEP=${STEP:-all}
LLAMA_SLIM=${LLAMA_SLIM:-1}
CUDA=${CUDA:-/usr/local/cuda}
say() { echo "[build_llama_cpp $(date +%T)] $*" >&2; }

# ---------------------------------------------------------------------------------------------------------------
# the link-time stubs: every cublas*/cu* symbol ggml-cuda references, returning an error; soname as the real ones
make_stub() { # soname return-value output < symbols
  local c; c=$(mktemp --suffix=.c)
  echo "/* link-time stub of $1: never shipped, never loaded where the real library exists */" > "$c"
  while read -r s; do [ -n "$s" ] && echo "int $s(void) { return $2; }" >> "$c"; done
  gcc -shared -fPIC -O0 -Wl,-soname,"$1" -o "$3" "$c"
  rm -f "$c"
}

stub_symbols() { # the cublas / driver symbols the sources call, after cublas_v2.h's and cuda.h's renames (cublasCreate -> cublasCreate_v2)
  local names; names=$(grep -rhoE '\b(cublas|cu)[A-Z][A-Za-z0-9_]*\s*\(' "$SRC/ggml/src/ggml-cuda" | sed 's/\s*($//' | sort -u | grep -v '^cuBLAS$')
  { echo '#include <cuda.h>'; echo '#include <cublas_v2.h>'; echo 'BEGIN_NAMES'; echo "$names"; } > "$STUBS/names.c"
  gcc -E -P -I"$CUDA/include" ${CUBLAS_INC:+-I"$CUBLAS_INC"} "$STUBS/names.c" | sed -n '/BEGIN_NAMES/,$p' | tail -n +2 | grep -E '^(cublas|cu)[A-Za-z0-9_]+$'
}

step_build() {
  if [ ! -d "$SRC/.git" ]; then
    say "cloning $BUNDLE into $SRC"
    git clone -q "$BUNDLE" "$SRC"
  fi
  git -C "$SRC" checkout -q "$COMMIT"
  if [ "$LLAMA_SLIM" = 1 ] && [ ! -e "$SRC/.peregrine-slim" ]; then
    say "slimming ggml-cuda (FlashAttention D=64,128; MMQ Q4_0,Q8_0,Q4_K,Q5_K,Q6_K; static cudart)"
    python3 - "$SRC" <<'PY'
import re, sys, pathlib
root = pathlib.Path(sys.argv[1]) / "ggml/src/ggml-cuda"
KEEP_D = {64, 128}
KEEP_MMQ = {"Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"}

def sub_once(text, pat, repl, flags=re.S):
    new, n = re.subn(pat, repl, text, count=1, flags=flags)
    assert n == 1, pat
    return new

p = root / "fattn.cu"; t = p.read_text()
t = sub_once(t, r"(static void ggml_cuda_flash_attn_ext_mma_f16\(.*?switch \(Q->ne\[0\]\) \{\n).*?        default:\n            GGML_ABORT\(\"fatal error\"\);",
             lambda m: m.group(1) + """        case 64:
            GGML_ASSERT(V->ne[0] == 64);
            ggml_cuda_flash_attn_ext_mma_f16_switch_ncols2< 64,  64>(ctx, dst);
            break;
        case 128:
            GGML_ASSERT(V->ne[0] == 128);
            ggml_cuda_flash_attn_ext_mma_f16_switch_ncols2<128, 128>(ctx, dst);
            break;
        default:
            GGML_ABORT("fatal error");""")
t = sub_once(t, r"    FATTN_VEC_CASE\(256, type_K_case, type_V_case\)       \\\n", "")
t = sub_once(t, r"(    switch \(K->ne\[0\]\) \{\n)        case  40:\n.*?        default:\n            return BEST_FATTN_KERNEL_NONE;\n",
             lambda m: m.group(1) + """        case  64:
        case 128:
            if (V->ne[0] != K->ne[0]) {
                return BEST_FATTN_KERNEL_NONE;
            }
            break;
        default:
            return BEST_FATTN_KERNEL_NONE;
""")
p.write_text(t)

p = root / "fattn-tile.cu"; t = p.read_text()
t = sub_once(t, r"(    switch \(K->ne\[0\]\) \{\n).*?(        default: \{)",
             lambda m: m.group(1) + """        case  64: {
            GGML_ASSERT(V->ne[0] == K->ne[0]);
            ggml_cuda_flash_attn_ext_tile_case< 64,  64>(ctx, dst);
        } break;
        case 128: {
            GGML_ASSERT(V->ne[0] == K->ne[0]);
            ggml_cuda_flash_attn_ext_tile_case<128, 128>(ctx, dst);
        } break;
""" + m.group(2))
p.write_text(t)

ti = root / "template-instances"
pat = re.compile(r"DECL_FATTN_(MMA_F16|VEC)_CASE\(\s*(\d+)")
for f in sorted(ti.glob("fattn-mma-f16-instance-*.cu")) + sorted(ti.glob("fattn-vec-instance-*.cu")):
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(l for l in lines if not pat.match(l) or int(pat.match(l).group(2)) in KEEP_D))

p = root / "mmq.cu"; t = p.read_text()
for ty in re.findall(r"case GGML_TYPE_(\w+):\n            mul_mat_q_case", t):
    if ty not in KEEP_MMQ:
        t = sub_once(t, r"        case GGML_TYPE_%s:\n            mul_mat_q_case<GGML_TYPE_%s>\(ctx, args, stream\);\n            break;\n" % (ty, ty), "")
body = re.search(r"bool ggml_cuda_should_use_mmq\(.*?mmq_supported = true;", t, re.S).group(0)
t = t.replace(body, re.sub(r"        case GGML_TYPE_(\w+):\n", lambda m: m.group(0) if m.group(1) in KEEP_MMQ else "", body))
p.write_text(t)

p = root / "CMakeLists.txt"; t = p.read_text()
old = 'file(GLOB   SRCS "template-instances/fattn-tile*.cu")'
assert old in t
t = t.replace(old, 'set(SRCS template-instances/fattn-tile-instance-dkq64-dv64.cu template-instances/fattn-tile-instance-dkq128-dv128.cu)')
old = 'file(GLOB   SRCS "template-instances/mmq*.cu")'
assert old in t
t = t.replace(old, "set(SRCS %s)" % " ".join("template-instances/mmq-instance-%s.cu" % x.lower() for x in sorted(KEEP_MMQ)))
old = "target_link_libraries(ggml-cuda PRIVATE CUDA::cudart CUDA::cublas)"
assert old in t
t = t.replace(old, "target_link_libraries(ggml-cuda PRIVATE CUDA::cudart_static CUDA::cublas)")
p.write_text(t)
PY
    touch "$SRC/.peregrine-slim"
  fi

  local cublas_args=() cuda_args=()
  if [ -e "$CUDA/include/cublas_v2.h" ] && ls "$CUDA"/lib64/libcublas.so* >/dev/null 2>&1; then
    say "using the toolkit's cuBLAS"
  else
    [ -n "$CUBLAS_INC" ] && [ -e "$CUBLAS_INC/cublas_v2.h" ] || { say "no cuBLAS in $CUDA: set CUBLAS_INC to a directory with cublas_v2.h and cublas_api.h (CUDA 13)"; exit 1; }
    mkdir -p "$STUBS"
    stub_symbols | grep '^cublas' | make_stub libcublas.so.13 1 "$STUBS/libcublas.so.13"
    ln -sf libcublas.so.13 "$STUBS/libcublas.so"
    cublas_args=(-DCUDA_cublas_LIBRARY="$STUBS/libcublas.so" -DCMAKE_CUDA_FLAGS="-I$CUBLAS_INC" -DCMAKE_CXX_FLAGS="-I$CUBLAS_INC")
  fi
  if ! ls "$CUDA"/lib64/stubs/libcuda.so "$CUDA"/targets/x86_64-linux/lib/stubs/libcuda.so >/dev/null 2>&1; then
    mkdir -p "$STUBS"
    stub_symbols | grep -v '^cublas' | make_stub libcuda.so.1 100 "$STUBS/libcuda.so.1"
    ln -sf libcuda.so.1 "$STUBS/libcuda.so"
    cuda_args=(-DCUDA_cuda_driver_LIBRARY="$STUBS/libcuda.so")
  fi

  say "configuring $BUILD"
  cmake -S "$SRC" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" -DGGML_CUDA_FA_QUANTS=f16-f16 \
    -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_GRAPHS=ON \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF \
    -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_OPENSSL=OFF \
    "${cublas_args[@]}" "${cuda_args[@]}" \
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN' \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$STUBS" -DCMAKE_SHARED_LINKER_FLAGS="" \
    > "$BUILD.configure.log"
  say "building (nice $NICE, -j$JOBS; log $BUILD/build.log)"
  local t0=$SECONDS
  nice -n "$NICE" ninja -C "$BUILD" -j"$JOBS" llama-bench llama-batched-bench llama-quantize > "$BUILD/build.log" 2>&1 || { tail -40 "$BUILD/build.log"; exit 1; }
  say "built in $((SECONDS - t0)) s"
}

step_pack() {
  local stage; stage=$(mktemp -d)/llama-cpp
  mkdir -p "$stage/bin"
  cp -L "$BUILD"/bin/llama-bench "$BUILD"/bin/llama-batched-bench "$BUILD"/bin/llama-quantize "$stage/bin/"
  # every shared library of ours the executables load (by soname), resolved in the build's bin/
  local libs
  libs=$(for e in "$stage"/bin/llama-*; do LD_LIBRARY_PATH="$BUILD/bin:$STUBS" ldd "$e"; done | awk '$3 ~ /^\// {print $1" "$3}' | grep -E "^lib(llama|ggml|mtmd)" | sort -u)
  while read -r soname path; do [ -n "$soname" ] && cp -L "$path" "$stage/bin/$soname"; done <<< "$libs"
  strip --strip-unneeded "$stage"/bin/*
  cp -r "$SRC/gguf-py" "$stage/gguf-py"
  find "$stage/gguf-py" -name '__pycache__' -prune -exec rm -rf {} +
  {
    echo "llama.cpp $(git -C "$SRC" rev-parse HEAD) (bundle of node-llama-cpp's npm package), built $(date -u +%FT%TZ) on $(uname -m)"
    echo "by bench/peers/build_llama_cpp.sh: CUDA $("$CUDA"/bin/nvcc --version | grep -o 'release [0-9.]*'), archs $ARCHS, $(gcc --version | head -1)"
    echo "slim ggml-cuda: $LLAMA_SLIM (FlashAttention head sizes 64 and 128, F16 K/V; MMQ for Q4_0 Q8_0 Q4_K Q5_K Q6_K; static cudart)"
    echo "cmake options:"; grep -E '^(GGML_(CUDA|NATIVE|AVX|FMA|F16C|BMI2|OPENMP|STATIC|BACKEND_DL)|BUILD_SHARED|CMAKE_BUILD_TYPE|CMAKE_CUDA_ARCH)' "$BUILD/CMakeCache.txt" | grep -v -- '-STRINGS' | sed 's/^/  /'
    echo "needs from the machine (ldd of bin/llama-bench, our libraries aside):"
    for e in "$stage"/bin/llama-bench "$stage"/bin/libggml-cuda.so.0; do readelf -d "$e" | grep NEEDED | sed 's/.*\[\(.*\)\]/  \1/'; done | sort -u | grep -vE 'lib(llama|ggml|mtmd)'
    echo "glibc >= $(for e in "$stage"/bin/*; do objdump -T "$e"; done | grep -oE 'GLIBC_[0-9.]+' | sort -u -V | tail -1 | cut -d_ -f2), libstdc++ with $(for e in "$stage"/bin/*; do objdump -T "$e"; done | grep -oE 'GLIBCXX_[0-9.]+' | sort -u -V | tail -1) (GCC 12 or later)"
  } > "$stage/BUILD.txt"
  mkdir -p "$(dirname "$OUT")"
  tar -C "$(dirname "$stage")" -cf - llama-cpp | xz -9e -T"$JOBS" > "$OUT.part"
  mv "$OUT.part" "$OUT"
  rm -rf "$(dirname "$stage")"
  say "packed $OUT ($(du -h "$OUT" | cut -f1))"
}

case "$STEP" in
  all) step_build; step_pack ;;
  build) step_build ;;
  pack) step_pack ;;
  *) say "STEP must be all, build or pack"; exit 2 ;;
esac
