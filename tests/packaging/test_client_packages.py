"""Each generated client, packaged and consumed by its ecosystem's own tools from a project in a
temporary directory outside the repository: npm (pack, install, node, tsc), Maven (install,
then a consumer project on the installed coordinates), pip (wheel into a fresh venv, mypy on
the installed types) and Go (a module that requires the client through a replace).

These are the commands of "Using a client outside this repository" in clients/README.md.
The caches are the interop suite's (tests.interop.runner.tool_env): .cache/npm, .cache/m2,
.cache/go. A missing toolchain fails the test: nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from tests.interop import runner

pytestmark = pytest.mark.integration

ROOT = runner.ROOT
CLIENTS = ROOT / "clients"
STEP_TIMEOUT = 300  # seconds per tool invocation; each test's pytest timeout is above the sum


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env if env is not None else runner.tool_env(),
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} (in {cwd}) timed out after {exc.timeout} s")
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} (in {cwd}) failed with {proc.returncode}:\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def _require(lang: str) -> None:
    tool = runner.missing_toolchain(lang)
    if tool is not None:
        pytest.fail(f"packaging the {lang} client needs {tool}, which is not installed")


# ---------------------------------------------------------------------------------------------
# npm


TS_CONSUMER_CJS = """\
const { credentials } = require("@grpc/grpc-js");
const { AvatarGatewayClient, CreateSessionRequest, linear16 } = require("@avatargateway/client");
const client = new AvatarGatewayClient("127.0.0.1:1", credentials.createInsecure()); // lazy
const request = CreateSessionRequest.fromPartial({ vendor: "zegocloud", avatarId: "zego_emma" });
if (typeof client.createSession !== "function" || typeof linear16 !== "function") {
  throw new Error("the client or a helper is missing");
}
console.log("ok cjs", request.vendor);
client.close();
"""

TS_CONSUMER_MJS = """\
import { credentials } from "@grpc/grpc-js";
import { AvatarGatewayClient, errorInfo } from "@avatargateway/client";
const client = new AvatarGatewayClient("127.0.0.1:1", credentials.createInsecure());
if (typeof client.drive !== "function" || errorInfo(new Error("plain")) !== undefined) {
  throw new Error("the client or errorInfo is wrong");
}
console.log("ok esm");
client.close();
"""

TS_CONSUMER_TS = """\
import { credentials } from "@grpc/grpc-js";
import {
  AvatarGatewayClient,
  CreateSessionRequest,
  type DriveStream,
  type ErrorInfo,
  connect,
  drive,
  errorInfo,
  linear16,
  traceContextInterceptor,
} from "@avatargateway/client";

const client: AvatarGatewayClient = new AvatarGatewayClient(
  "127.0.0.1:1",
  credentials.createInsecure(),
);
const request: CreateSessionRequest = CreateSessionRequest.fromPartial({
  vendor: "zegocloud",
  avatarId: "zego_emma",
});
const info: ErrorInfo | undefined = errorInfo(new Error("plain"));
const open: () => Promise<DriveStream> = () => drive(client, "sessions/x", linear16(16000, 1));
// The helper's client propagates the trace context (the peer dependency @opentelemetry/api).
const traced: AvatarGatewayClient = connect("127.0.0.1:1", {
  plaintext: true,
  propagateTraceContext: true,
});
console.log(request.vendor, info, typeof open, typeof traceContextInterceptor);
traced.close();
client.close();
"""

TS_CONSUMER_TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "node16",
        "moduleResolution": "node16",
        "strict": True,
        "noEmit": True,
        "types": ["node"],
    },
    "files": ["consumer.ts"],
}


@pytest.mark.timeout(900)
def test_npm_pack_installs_and_type_checks_in_a_consumer(tmp_path: Path) -> None:
    _require("typescript")
    ts = CLIENTS / "typescript"
    manifest = json.loads((ts / "package.json").read_text())
    runner.ensure_node_modules(ts)  # typescript for the prepack build

    packed = tmp_path / "packed"
    packed.mkdir()
    _run(["npm", "pack", "--pack-destination", str(packed)], ts)  # prepack builds dist/src
    tarballs = list(packed.glob("*.tgz"))
    assert len(tarballs) == 1, tarballs
    with tarfile.open(tarballs[0]) as tar:
        names = {m.name.removeprefix("package/") for m in tar.getmembers() if m.isfile()}
    for needed in (
        "package.json",
        "dist/src/index.js",
        "dist/src/index.d.ts",
        "dist/src/gen/avatar/gateway/v1/avatar_gateway_service.js",
        "dist/src/gen/avatar/gateway/v1/avatar_gateway_service.d.ts",
    ):
        assert needed in names, f"{needed} is not in the tarball: {sorted(names)}"
    unwanted = [
        n
        for n in names
        if (not n.startswith("dist/src/") and n != "package.json")
        or (n.endswith(".ts") and not n.endswith(".d.ts"))
    ]
    assert not unwanted, f"the tarball ships more than dist/src: {unwanted}"
    for entry in (manifest["main"], manifest["types"], *manifest["exports"]["."].values()):
        assert entry.removeprefix("./") in names, f"{entry} (package.json) is not in the tarball"

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "package.json").write_text(
        json.dumps({"name": "consumer", "version": "0.0.0", "private": True})
    )
    dev = manifest["devDependencies"]
    _run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefer-offline",
            str(tarballs[0]),
            f"@grpc/grpc-js@{manifest['dependencies']['@grpc/grpc-js']}",
            f"typescript@{dev['typescript']}",
            f"@types/node@{dev['@types/node']}",
        ],
        consumer,
    )
    (consumer / "consumer.cjs").write_text(TS_CONSUMER_CJS)
    (consumer / "consumer.mjs").write_text(TS_CONSUMER_MJS)
    (consumer / "consumer.ts").write_text(TS_CONSUMER_TS)
    (consumer / "tsconfig.json").write_text(json.dumps(TS_CONSUMER_TSCONFIG))
    assert "ok cjs zegocloud" in _run(["node", "consumer.cjs"], consumer).stdout
    assert "ok esm" in _run(["node", "consumer.mjs"], consumer).stdout
    _run([str(consumer / "node_modules/.bin/tsc"), "--noEmit", "-p", "tsconfig.json"], consumer)


# ---------------------------------------------------------------------------------------------
# Maven

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

JAVA_CONSUMER = """\
package consumer;

import com.avatargateway.client.ErrorInfos;
import com.avatargateway.client.GatewayChannelBuilder;
import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.CreateSessionRequest;
import io.grpc.ManagedChannel;

/** Builds a stub against the installed client; the channel is lazy, so nothing connects. */
public final class Main {
  public static void main(String[] args) throws java.io.IOException {
    // The helper's channel has the trace context interceptor: opentelemetry-api comes along.
    ManagedChannel channel = GatewayChannelBuilder.forTarget("127.0.0.1:1").usePlaintext().build();
    try {
      AvatarGatewayGrpc.AvatarGatewayBlockingStub stub = AvatarGatewayGrpc.newBlockingStub(channel);
      CreateSessionRequest request =
          CreateSessionRequest.newBuilder().setVendor("zegocloud").setAvatarId("zego_emma").build();
      if (ErrorInfos.fromThrowable(new RuntimeException("plain")).isPresent()) {
        throw new AssertionError("ErrorInfo from a plain exception");
      }
      System.out.println("ok " + stub.getClass().getSimpleName() + " " + request.getVendor());
    } finally {
      channel.shutdownNow();
    }
  }
}
"""


def _consumer_pom(group: str, artifact: str, version: str, plugins: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId>
  <artifactId>consumer</artifactId>
  <version>1</version>
  <properties>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
    <maven.compiler.release>17</maven.compiler.release>
  </properties>
  <dependencies>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
  <build><pluginManagement><plugins>
{plugins}
  </plugins></pluginManagement></build>
</project>
"""


@pytest.mark.timeout(900)
def test_maven_install_and_a_consumer_project(tmp_path: Path) -> None:
    _require("java")
    java = CLIENTS / "java"
    pom = ET.parse(java / "pom.xml").getroot()
    group, artifact, version = (
        pom.findtext(f"m:{tag}", namespaces=POM_NS) for tag in ("groupId", "artifactId", "version")
    )
    assert group and artifact and version
    repo = Path(runner.maven_repo())
    mvn = ["mvn", "-B", "-q", "-Dstyle.color=never", f"-Dmaven.repo.local={repo}"]
    _run([*mvn, "-DskipTests", "install"], java)  # Surefire runs in test_java_helpers

    installed = repo.joinpath(*group.split("."), artifact, version)
    jar = installed / f"{artifact}-{version}.jar"
    sources = installed / f"{artifact}-{version}-sources.jar"
    assert jar.is_file() and sources.is_file(), sorted(p.name for p in installed.iterdir())
    for path, ext in ((jar, ".class"), (sources, ".java")):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
        for needed in (
            "com/avatargateway/gateway/v1/AvatarGatewayGrpc",
            "com/avatargateway/client/DriveStream",
        ):
            assert needed + ext in names, f"{needed}{ext} is not in {path.name}"
        # Files only: a target/ built before the driver moved keeps its (empty) directory.
        interop = sorted(
            n for n in names if n.startswith("com/avatargateway/interop/") and not n.endswith("/")
        )
        assert not interop, f"{path.name} ships the interop driver: {interop}"

    # The consumer uses the client's plugin pins, so it resolves from the same (warm) cache.
    plugins = "\n".join(
        f"    <plugin><artifactId>{p.findtext('m:artifactId', namespaces=POM_NS)}</artifactId>"
        f"<version>{p.findtext('m:version', namespaces=POM_NS)}</version></plugin>"
        for p in pom.iterfind("m:build/m:pluginManagement/m:plugins/m:plugin", POM_NS)
    )
    consumer = tmp_path / "consumer"
    (consumer / "src/main/java/consumer").mkdir(parents=True)
    (consumer / "pom.xml").write_text(_consumer_pom(group, artifact, version, plugins))
    (consumer / "src/main/java/consumer/Main.java").write_text(JAVA_CONSUMER)
    _run(
        [*mvn, "compile", "dependency:build-classpath", "-Dmdep.outputFile=classpath.txt"],
        consumer,
    )
    classpath = (consumer / "classpath.txt").read_text().strip()
    assert str(jar) in classpath.split(os.pathsep), classpath
    out = _run(
        ["java", "-cp", f"{consumer / 'target/classes'}{os.pathsep}{classpath}", "consumer.Main"],
        consumer,
    ).stdout
    assert "ok AvatarGatewayBlockingStub zegocloud" in out


# ---------------------------------------------------------------------------------------------
# pip

PY_CONSUMER = """\
import grpc
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar_gateway_client import Audio, connect_sync, drive_requests, error_info

# Lazy: nothing connects. The helper's channel propagates the trace context (opentelemetry-api).
channel: grpc.Channel = connect_sync("127.0.0.1:1", plaintext=True)
stub = pb_grpc.AvatarGatewayStub(channel)
request: pb.CreateSessionRequest = pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego")
requests = list(drive_requests("sessions/x", Audio(b"", 16000).format, [bytes(3200)]))
kinds = [r.WhichOneof("request") for r in requests]
assert kinds == ["config", "audio"], kinds
assert error_info(ValueError("plain")) is None
channel.close()
print("ok", type(stub).__name__, request.vendor, pb.__file__)
"""


@pytest.mark.timeout(600)
def test_python_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    # Build from a copy: setuptools leaves build/ and *.egg-info behind, and a stale build/
    # could put files that no longer exist into the wheel.
    src = tmp_path / "src"
    shutil.copytree(
        CLIENTS / "python",
        src,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], src)
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
    for needed in (
        "avatar/py.typed",
        "avatar_gateway_client/py.typed",
        "avatar_gateway_client/drive.py",
        "avatar/gateway/v1/avatar_gateway_service_pb2.py",
        "avatar/gateway/v1/avatar_gateway_service_pb2.pyi",
        "avatar/gateway/v1/avatar_gateway_service_pb2_grpc.pyi",
        "avatar/gateway/v1/media_pb2.pyi",
    ):
        assert needed in names, f"{needed} is not in {wheels[0].name}"
    extra = sorted(n for n in names if n.split("/")[0] in ("interop", "examples"))
    assert not extra, f"the wheel ships {extra}"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py = str(venv / "bin/python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # The wheel's dependencies at the project's pins, and the stubs a typed consumer adds.
    _run(
        [
            py,
            *("-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")),
            str(wheels[0]),
            "grpc-stubs",
            "types-protobuf",
        ],
        tmp_path,
        env,
    )
    (tmp_path / "consumer.py").write_text(PY_CONSUMER)
    out = _run([py, "consumer.py"], tmp_path, env).stdout
    assert out.startswith("ok AvatarGatewayStub zegocloud "), out
    assert Path(out.split()[-1]).is_relative_to(venv), f"imported from outside the venv: {out}"
    # The installed package's py.typed and .pyi files are what mypy type-checks against.
    _run(
        [
            sys.executable,
            *("-m", "mypy", "--config-file=", "--strict", "--no-incremental"),
            *("--python-executable", py),
            "consumer.py",
        ],
        tmp_path,
        env,
    )


# ---------------------------------------------------------------------------------------------
# Go

GO_CONSUMER = """\
// A program outside the client module that depends on it as a service would.
package main

import (
	"errors"
	"fmt"
	"os"

	gatewayv1 "{module}/avatar/gateway/v1"
	"{module}/gatewayclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	// grpc.NewClient is lazy: nothing connects.
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	conn, err := grpc.NewClient("127.0.0.1:1", creds)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	client := gatewayv1.NewAvatarGatewayClient(conn)
	format := gatewayclient.LINEAR16(16000, 1)
	req := &gatewayv1.CreateSessionRequest{Vendor: "zegocloud", AvatarId: "zego_emma"}
	if gatewayclient.ErrorInfo(errors.New("plain")) != nil {
		fmt.Fprintln(os.Stderr, "ErrorInfo of a plain error")
		os.Exit(1)
	}
	fmt.Printf("ok %T %d %s\\n", client, format.GetSampleRateHertz(), req.GetVendor())
}
"""


@pytest.mark.timeout(900)
def test_go_module_required_by_a_consumer(tmp_path: Path) -> None:
    _require("go")
    client = CLIENTS / "go"
    directives = dict(
        line.split(maxsplit=1)
        for line in (client / "go.mod").read_text().splitlines()
        if line.startswith(("module ", "go "))
    )
    module = directives["module"]
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "go.mod").write_text(
        f"module example.com/consumer\n\ngo {directives['go']}\n\n"
        f"require {module} v0.0.0\n\nreplace {module} => {client}\n"
    )
    # The client's checksums: its dependencies are the consumer's (no checksum database look-up).
    shutil.copy(client / "go.sum", consumer / "go.sum")
    (consumer / "main.go").write_text(GO_CONSUMER.replace("{module}", module))
    env = runner.tool_env()
    env["GOFLAGS"] = (env["GOFLAGS"] + " -mod=mod").strip()
    env["GOTOOLCHAIN"] = "local"
    _run(["go", "build", "-o", "consumer", "."], consumer, env)
    out = _run([str(consumer / "consumer")], consumer, env).stdout
    assert out.strip() == "ok *gatewayv1.avatarGatewayClient 16000 zegocloud", out
