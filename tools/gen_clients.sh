#!/usr/bin/env bash
# Regenerates the client stubs of every language from protos/avatar/gateway/v1.
#
#   tools/gen_clients.sh                      # all languages, in place (clients/<lang>/...)
#   tools/gen_clients.sh --lang go,java       # a subset: python, go, typescript, java
#   tools/gen_clients.sh --out DIR            # generate into DIR/clients/... (freshness check)
#   tools/gen_clients.sh --install-only       # only install the pinned plugins
#
# Every codegen plugin is local and pinned (buf's remote plugins are not used). Missing or
# wrong-version plugins are installed, unattended, on first use:
#   - protoc-gen-go, protoc-gen-go-grpc: `go install` from the Go module proxy -> .cache/bin
#   - protoc (for buf's built-in java generator) and protoc-gen-grpc-java: Maven Central
#     (`mvn dependency:get`) -> .cache/bin
#   - protoc-gen-ts_proto: npm, pinned by clients/typescript/package-lock.json (`npm ci`)
# Python goes through tools/gen_python.sh (grpcio-tools + mypy-protobuf pinned in pyproject.toml).
# Caches live under .cache/ (gitignored): .cache/go, .cache/m2, .cache/npm.
set -euo pipefail

# ---- pins (bump here; the committed generated code records the versions it was made with) ----
PROTOC_GEN_GO_VERSION=v1.36.12          # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2       # google.golang.org/grpc/cmd/protoc-gen-go-grpc
PROTOC_VERSION=4.36.2                   # com.google.protobuf:protoc == protobuf-java in clients/java/pom.xml
GRPC_JAVA_VERSION=1.83.1                # io.grpc:protoc-gen-grpc-java == grpc-java in clients/java/pom.xml (newest with a linux exe on Maven Central)
MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.11.0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=$ROOT/.cache/bin
PY=${PYTHON:-$ROOT/.venv/bin/python}
BUF=${BUF:-$ROOT/tools/buf/node_modules/.bin/buf}

# Shared caches (the interop runner uses the same ones).
export GOMODCACHE=${GOMODCACHE:-$ROOT/.cache/go/mod}
export GOCACHE=${GOCACHE:-$ROOT/.cache/go/build}
export GOFLAGS="${GOFLAGS:-} -modcacherw"
export npm_config_cache=${npm_config_cache:-$ROOT/.cache/npm}
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
MVN_REPO=${MAVEN_REPO_LOCAL:-$ROOT/.cache/m2}

out=""
langs="python,go,typescript,java"
install_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --lang) langs=$2; shift 2 ;;
    --install-only) install_only=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gen_clients.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { case ",$langs," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

log() { echo "gen_clients: $*" >&2; }

# installed NAME VERSION: true when .cache/bin/NAME exists and was installed at VERSION.
installed() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$BIN/.$1.version"; }

install_go_plugin() { # NAME MODULE_PATH VERSION
  local name=$1 pkg=$2 ver=$3
  installed "$name" "$ver" && return 0
  log "installing $name $ver (go install $pkg@$ver)"
  mkdir -p "$BIN"
  GOBIN="$BIN" go install "$pkg@$ver"
  stamp "$name" "$ver"
}

os_arch_classifier() {
  local os arch
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=osx ;; *) os=windows ;; esac
  case "$(uname -m)" in x86_64|amd64) arch=x86_64 ;; aarch64|arm64) arch=aarch_64 ;; *) arch=$(uname -m) ;; esac
  echo "$os-$arch"
}

install_maven_exe() { # NAME GROUP ARTIFACT VERSION
  local name=$1 group=$2 artifact=$3 ver=$4 cls
  installed "$name" "$ver" && return 0
  cls=$(os_arch_classifier)
  log "installing $name $ver (Maven Central $group:$artifact:$ver:exe:$cls)"
  mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$MVN_REPO" "$MAVEN_DEPENDENCY_PLUGIN:get" \
    -Dartifact="$group:$artifact:$ver:exe:$cls" -Dtransitive=false >&2
  mkdir -p "$BIN"
  install -m 0755 "$MVN_REPO/${group//.//}/$artifact/$ver/$artifact-$ver-$cls.exe" "$BIN/$name"
  stamp "$name" "$ver"
}

install_ts_plugin() {
  local dir=$ROOT/clients/typescript
  if [ -x "$dir/node_modules/.bin/protoc-gen-ts_proto" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  log "installing clients/typescript dependencies (npm ci; pins ts-proto)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
}

install_buf() {
  [ -x "$BUF" ] && return 0
  log "installing buf (tools/buf, npm)"
  # npm install, as the Makefile does: tools/buf/package-lock.json lacks the platform packages npm ci wants.
  (cd "$ROOT/tools/buf" && npm install --no-save --no-audit --no-fund --loglevel=error >&2)
}

install_plugins() {
  if want go || want typescript || want java; then
    install_buf
  fi
  if want go; then
    install_go_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
    install_go_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
  fi
  if want java; then
    install_maven_exe protoc com.google.protobuf protoc "$PROTOC_VERSION"
    install_maven_exe protoc-gen-grpc-java io.grpc protoc-gen-grpc-java "$GRPC_JAVA_VERSION"
  fi
  if want typescript; then
    install_ts_plugin
  fi
}

# The buf.gen.yaml plugins whose output belongs to the selected languages, as a JSON template
# (buf.gen.yaml itself when all three are selected, so no Python is needed then).
buf_template() {
  if want go && want typescript && want java; then
    echo buf.gen.yaml
    return
  fi
  "$PY" - "$langs" <<'EOF'
import json, sys
import yaml
langs = set(sys.argv[1].split(","))
with open("buf.gen.yaml") as f:
    tpl = yaml.safe_load(f)
tpl["plugins"] = [p for p in tpl["plugins"] if p["out"].split("/")[1] in langs]
print(json.dumps(tpl))
EOF
}

install_plugins
[ "$install_only" = 1 ] && exit 0

dest=${out:-$ROOT}

# Generated directories (nothing hand-written lives in them).
if [ -z "$out" ]; then
  want go && rm -f clients/go/avatar/gateway/v1/*.pb.go
  want typescript && rm -rf clients/typescript/src/gen
  want java && rm -rf clients/java/src/main/java/com/avatargateway/gateway/v1
fi

if want go || want typescript || want java; then
  log "buf generate ($langs) -> ${out:-clients/}"
  if [ -n "$out" ]; then
    "$BUF" generate --template "$(buf_template)" -o "$out"
  else
    "$BUF" generate --template "$(buf_template)"
  fi
fi

if want python; then
  log "tools/gen_python.sh -> ${out:+$out/}clients/python/src"
  if [ -n "$out" ]; then
    # gen_python.sh writes next to itself: run a copy inside DIR against the real protos.
    mkdir -p "$out/tools" "$out/clients/python/src"
    cp tools/gen_python.sh "$out/tools/"
    [ -e "$out/protos" ] || ln -s "$ROOT/protos" "$out/protos"
    PYTHON="$PY" bash "$out/tools/gen_python.sh"
    rm -rf "$out/tools" "$out/protos"
  else
    PYTHON="$PY" tools/gen_python.sh
  fi
fi

log "done (${dest})"
