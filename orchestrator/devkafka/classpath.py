"""Resolve the Kafka broker's jars from Maven Central once, and cache the classpath.

Maven is the ordinary client for Maven Central and knows the broker's dependency tree, so we
ask it (`dependency:build-classpath`) instead of fetching jars ourselves. That takes seconds
even when ~/.m2 is warm, so the classpath is cached, keyed by the pom's sha256: editing the
pom (another Kafka version) resolves again, and so does a cache whose jars have vanished.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

KAFKA_DIR = Path(__file__).resolve().parents[2] / "kafka"
POM = KAFKA_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.properties"
INSTALL_HINT = ("install them, e.g. `apt-get install -y maven openjdk-17-jre-headless` "
                "(Java 17 or newer)")
_HEADER = "# pom-sha256 "


class DevKafkaError(Exception):
    """The local broker could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True)
class Runtime:
    """What starting a broker JVM needs: the java binary and the resolved classpath."""

    java: str
    classpath: str
    version: str


def require_tool(name: str) -> str:
    """The tool's path; a missing one is a setup problem with a known fix, so say it."""
    path = shutil.which(name)
    if path is None:
        raise DevKafkaError(f"`{name}` is not on PATH; the local Kafka broker needs Java and "
                            f"Maven: {INSTALL_HINT}")
    return path


def kafka_version(pom_text: str) -> str:
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom_text)
    if match is None:
        raise DevKafkaError(f"{POM} has no <kafka.version> property")
    return match.group(1)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "baton"


def cached_classpath(cache: Path, pom_sha: str) -> str | None:
    """The cached classpath if it was built from this pom and every jar is still there."""
    try:
        header, classpath = cache.read_text().split("\n", 1)
    except (OSError, ValueError):
        return None
    classpath = classpath.strip()
    if header != _HEADER + pom_sha or not classpath:
        return None
    if not all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
        return None
    return classpath


async def run_maven(pom: Path, out: Path) -> None:
    """`mvn dependency:build-classpath`, with Maven's own output in the error if it fails."""
    mvn = require_tool("mvn")
    proc = await asyncio.create_subprocess_exec(
        mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath",
        f"-Dmdep.outputFile={out}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        tail = "\n".join(output.decode(errors="replace").strip().splitlines()[-20:])
        raise DevKafkaError(f"Maven could not resolve the Kafka broker from {pom} "
                            f"(exit {proc.returncode}); is Maven Central reachable?\n{tail}")


def pom_identity(pom: Path) -> tuple[str, str]:
    """The Kafka version the pom pins and the pom's sha256 (the cache key)."""
    if not pom.exists():
        raise DevKafkaError(f"{pom} is missing; `baton dev kafka` runs from a source checkout")
    text = pom.read_text()
    return kafka_version(text), hashlib.sha256(text.encode()).hexdigest()


async def resolve(pom: Path = POM) -> Runtime:
    """Java plus the broker classpath, running Maven only when the cache does not fit."""
    java = require_tool("java")
    version, pom_sha = pom_identity(pom)
    cache = cache_dir() / f"kafka-{version}-classpath.txt"
    classpath = cached_classpath(cache, pom_sha)
    if classpath is None:
        classpath = await _build(pom, cache, pom_sha)
    return Runtime(java=java, classpath=classpath, version=version)


async def _build(pom: Path, cache: Path, pom_sha: str) -> str:
    """Resolve and write the cache atomically (two concurrent first runs must not clash)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    raw = cache.with_name(f"{cache.name}.{os.getpid()}.mvn")
    try:
        await run_maven(pom, raw)
        classpath = raw.read_text().strip()
    finally:
        raw.unlink(missing_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{_HEADER}{pom_sha}\n{classpath}\n")
    tmp.replace(cache)
    return classpath
