# Sourced by .ci/run: build llama-server (CPU, Release, server target only) from the PyPI
# sdist of llama-cpp-python, which vendors all of llama.cpp, and cache the binary and the
# vendored converter outside the checkout, keyed by version. Exports OSS_AGENT_LLAMA_SERVER
# (the binary) and OSS_AGENT_LLAMACPP_SRC (the vendored tree: convert_hf_to_gguf.py, gguf-py,
# conversion/, and the gpt-oss chat template the tiny test GGUFs carry).
# A warm cache skips the build.

_oss_llama_version="0.3.36"
_oss_llama_cache="${OSS_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oss-agent}/llama-cpp-python-${_oss_llama_version}"

_oss_llama_template="models/templates/openai-gpt-oss-120b.jinja"
if [ ! -x "$_oss_llama_cache/bin/llama-server" ] || [ ! -f "$_oss_llama_cache/src/$_oss_llama_template" ]; then
    echo "llama_server.sh: building llama-server from llama-cpp-python ${_oss_llama_version} (about 10 min on 2 cores)" >&2
    _oss_llama_tmp="$(mktemp -d -t llamacpp.XXXXXX)"
    python3 -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==${_oss_llama_version}" -d "$_oss_llama_tmp"
    tar -xzf "$_oss_llama_tmp"/llama_cpp_python-*.tar.gz -C "$_oss_llama_tmp"
    _oss_llama_src="$(echo "$_oss_llama_tmp"/llama_cpp_python-*/vendor/llama.cpp)"
    cmake -S "$_oss_llama_src" -B "$_oss_llama_tmp/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DBUILD_SHARED_LIBS=OFF >/dev/null
    cmake --build "$_oss_llama_tmp/build" --target llama-server -j"$(nproc)" >/dev/null
    rm -rf "$_oss_llama_cache.partial"
    mkdir -p "$_oss_llama_cache.partial/bin"
    cp "$_oss_llama_tmp/build/bin/llama-server" "$_oss_llama_cache.partial/bin/"
    mkdir -p "$_oss_llama_cache.partial/src"
    cp -r "$_oss_llama_src/convert_hf_to_gguf.py" "$_oss_llama_src/gguf-py" "$_oss_llama_cache.partial/src/"
    [ -d "$_oss_llama_src/conversion" ] && cp -r "$_oss_llama_src/conversion" "$_oss_llama_cache.partial/src/"
    mkdir -p "$_oss_llama_cache.partial/src/$(dirname "$_oss_llama_template")"
    cp "$_oss_llama_src/$_oss_llama_template" "$_oss_llama_cache.partial/src/$_oss_llama_template"
    rm -rf "$_oss_llama_cache"
    mv "$_oss_llama_cache.partial" "$_oss_llama_cache"
    rm -rf "$_oss_llama_tmp"
fi

OSS_AGENT_LLAMA_SERVER="$_oss_llama_cache/bin/llama-server"
OSS_AGENT_LLAMACPP_SRC="$_oss_llama_cache/src"
export OSS_AGENT_LLAMA_SERVER OSS_AGENT_LLAMACPP_SRC
echo "llama_server.sh: $("$OSS_AGENT_LLAMA_SERVER" --version 2>&1 | head -n 1)" >&2
