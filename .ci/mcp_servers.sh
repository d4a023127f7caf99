# Sourced by .ci/run: install the reference MCP servers from the npm registry (pinned) into a
# cache outside the checkout, keyed by their versions, and export OSS_AGENT_MCP_SERVERS (the
# directory whose node_modules/.bin holds mcp-server-everything and mcp-server-filesystem).
# A warm cache skips the install.

_oss_mcp_everything="2026.8.31"
_oss_mcp_filesystem="2026.8.31"
_oss_mcp_cache="${OSS_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oss-agent}/mcp-servers-everything-${_oss_mcp_everything}-filesystem-${_oss_mcp_filesystem}"

if [ ! -x "$_oss_mcp_cache/node_modules/.bin/mcp-server-everything" ] || [ ! -x "$_oss_mcp_cache/node_modules/.bin/mcp-server-filesystem" ]; then
    echo "mcp_servers.sh: installing the MCP reference servers into $_oss_mcp_cache" >&2
    rm -rf "$_oss_mcp_cache.partial"
    mkdir -p "$_oss_mcp_cache.partial"
    printf '{"name": "oss-agent-mcp-servers", "private": true}\n' >"$_oss_mcp_cache.partial/package.json"
    npm install --prefix "$_oss_mcp_cache.partial" --no-audit --no-fund --loglevel=error --save-exact \
        "@modelcontextprotocol/server-everything@${_oss_mcp_everything}" \
        "@modelcontextprotocol/server-filesystem@${_oss_mcp_filesystem}" >/dev/null
    rm -rf "$_oss_mcp_cache"
    mv "$_oss_mcp_cache.partial" "$_oss_mcp_cache"
fi

OSS_AGENT_MCP_SERVERS="$_oss_mcp_cache"
export OSS_AGENT_MCP_SERVERS
echo "mcp_servers.sh: server-everything ${_oss_mcp_everything}, server-filesystem ${_oss_mcp_filesystem} in $OSS_AGENT_MCP_SERVERS" >&2
