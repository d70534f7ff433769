"""The ``edge-vlm`` command: run, check, describe, doctor, demo, install-service."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge_vlm import __version__
from edge_vlm.config import ConfigFile, load_checked, load_config
from edge_vlm.config.models import AppConfig, CameraConfig, LoggingConfig
from edge_vlm.config.secrets import describe_source
from edge_vlm.config.sources import RtspSourceConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import BackendError, ConfigError, InputError
from edge_vlm.core.redact import redact_url
from edge_vlm.doctor.check import size_text
from edge_vlm.install import add_parser as add_install_service

if TYPE_CHECKING:
    from edge_vlm.inference.results import Description

logger = logging.getLogger("edge_vlm")

DEFAULT_CONFIG = Path("/etc/edge-vlm/edge_vlm.yaml")
# `run` on an invalid config file (sysexits' EX_CONFIG): the unit's RestartPreventExitStatus= does
# not restart a daemon that would fail the same way until the file is fixed.
EXIT_CONFIG = 78


_module_levels: set[str] = set()  # the loggers setup_logging gave a level of their own


def setup_logging(config: LoggingConfig) -> None:
    """Configure logging for the whole process: at start, and again after a reload."""
    # Under systemd the journal stamps each line; a second timestamp is noise.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=config.level, format=f"{stamp}%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    for module in _module_levels - set(config.modules):  # set by the configuration before a reload
        logging.getLogger(module).setLevel(logging.NOTSET)
    for module, level in config.modules.items():
        logging.getLogger(module).setLevel(level)
        if module.startswith("edge_vlm.") and not _is_module(module):  # e.g. a name from before a reshape
            logging.getLogger(__name__).warning("logging.modules: %s is no module of edge_vlm: its level applies "
                                                "to nothing (see the layout in docs/development.md)", module)
    _module_levels.update(config.modules)


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of edge_vlm, or a logger one of them names itself by."""
    if name == "edge_vlm.mqtt.paho":
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent is no package
        return False


def _load(path: Path, *, environ_checks: bool, status: int = 1) -> ConfigFile:
    """The validated config, or every problem printed to stderr and exit ``status``."""
    try:
        # The same checks as a reload's (edge_vlm.run.daemon).
        return load_checked(path, os.environ) if environ_checks else load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(status) from None


def summary(config: AppConfig) -> str:
    mqtt = config.mqtt
    auth = f"user {mqtt.username}" if mqtt.username else "anonymous"
    if mqtt.password_env or mqtt.password_credential:
        auth += f", password from {describe_source(mqtt.password_env, mqtt.password_credential)}"
    lines = [
        f"node {config.node_id}: topics under {config.base_topic}/, status on "
        f"{config.base_topic}/{config.node_id}/status",
        f"broker {mqtt.host}:{mqtt.port}, MQTT {mqtt.protocol}, {'TLS' if mqtt.tls.enabled else 'no TLS'}, {auth}",
        f"discovery: {'on, prefix ' + config.discovery.prefix if config.discovery.enabled else 'off'}",
        f"backend: {backend_summary(config)}",
        f"{len(config.cameras)} camera(s):",
    ]
    for camera in config.cameras:
        extra = f", also {', '.join(camera.snapshot_topics)}" if camera.snapshot_topics else ""
        state = "" if camera.enabled else " (disabled)"
        url = getattr(camera.source, "url", None)
        source = camera.source.type + (f" {redact_url(url)}" if url else "")
        if isinstance(camera.source, RtspSourceConfig):
            source += f" ({camera.source.mode}{', motion' if camera.motion.enabled else ''})"
        if camera.interval_s:
            source += f", every {camera.interval_s:g} s"
        if camera.frigate is not None:
            source += ", Frigate events"
        if camera.clip is not None:
            source += f", clip {camera.clip.seconds:g} s ({size_text(camera.clip.most_bytes)} at most)"
        lines.append(f"  {camera.id} ({camera.display_name}){state}: source {source}{extra}")
    return "\n".join(lines)


def backend_summary(config: AppConfig) -> str:
    backend = config.backend
    if not isinstance(backend, VlmBackendConfig):
        return "opencv (built in)"
    spec = backend.spec
    tokens = f"{spec.image_tokens} image tokens" if spec.image_tokens else "image tokens from the model"
    return (f"vlm {spec.family}: {backend.encoder.type} encoder {backend.encoder.model} ({spec.input_size} px, "
            f"{tokens}), rkllm {backend.llm.model} (runtime {backend.llm.runtime_version}, "
            f"context {backend.llm.max_context_len}, up to {backend.llm.max_new_tokens} new tokens)")


def cmd_check(args: argparse.Namespace) -> int:
    loaded = _load(args.config, environ_checks=True)
    print(f"{args.config}: valid")
    print(summary(loaded.config))
    backend = loaded.config.backend
    if isinstance(backend, VlmBackendConfig):
        from edge_vlm.doctor.backend import check_runtime  # noqa: PLC0415

        # Which ABI the library speaks, as doctor says it: the wrong one crashes while loading.
        runtime = check_runtime(backend.llm, Path("/"))
        if runtime.status != "PASS":
            print(f"warning: {runtime.finding}" + (f" ({runtime.fix})" if runtime.fix else ""), file=sys.stderr)
    return 0


GIL_SWITCH_INTERVAL_S = 0.0005


def cmd_run(args: argparse.Namespace) -> int:
    from edge_vlm.run.daemon import Daemon  # noqa: PLC0415 - keeps `check` free of OpenCV imports

    config = _load(args.config, environ_checks=True, status=EXIT_CONFIG).config
    setup_logging(config.logging)
    logger.info("edge_vlm %s starting with %s", __version__, args.config)
    # paho's network thread must read the socket as fast as the broker sends, or the broker drops what
    # it queues for us (QoS 1 triggers and requests among it). Each of its reads gives up the GIL, and
    # with the default 5 ms switch interval a busy dispatcher thread held it back to a few hundred
    # messages a second (a 1000/s snapshot flood wedged delivery); 0.5 ms lets it keep up.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    daemon = Daemon(args.config, config, os.environ, setup_logging)
    daemon.install_signal_handlers()
    return daemon.run()


def cmd_describe(args: argparse.Namespace) -> int:
    from edge_vlm.frames import decode_image  # noqa: PLC0415
    from edge_vlm.inference.backends import create_backend  # noqa: PLC0415

    # Without a file: the defaults, as a config with one camera would have them.
    config = (_load(args.config, environ_checks=False).config if args.config
              else AppConfig(cameras=[CameraConfig(id="cli")]))
    setup_logging(config.logging if args.config else LoggingConfig(level="WARNING"))
    prompt = args.prompt or config.prompt
    if args.prompt and not isinstance(config.backend, VlmBackendConfig):
        print("note: the opencv backend reads no prompt: it counts people and faces and measures light and "
              "motion (--prompt needs the vlm backend)", file=sys.stderr)
    limits = config.limits
    backend = create_backend(config.backend)
    try:
        started = time.perf_counter()
        backend.load()
        load_ms = (time.perf_counter() - started) * 1000
        data = args.image.read_bytes()
        started = time.perf_counter()
        frame = decode_image(data, camera="cli", captured_at=time.time(), max_bytes=limits.max_payload_bytes,
                             max_pixels=limits.max_image_pixels, min_long_side=backend.min_long_side)
        capture_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        prepared = backend.prepare(frame)
        preprocess_ms = (time.perf_counter() - started) * 1000
        with backend.conversation(prepared, frame) as chat:  # the questions follow up on the same reading
            turns = [chat.ask(prompt), *(chat.ask(question) for question in args.ask)]
    except OSError as exc:
        print(f"{args.image}: {exc.strerror}", file=sys.stderr)
        return 1
    except (InputError, BackendError) as exc:
        print(f"{args.image}: {exc}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    print(turns[0].text)
    for question, turn in zip(args.ask, turns[1:], strict=True):
        print(f"{question} {turn.text}")
    timings = {"load": load_ms, "capture": capture_ms, "preprocess": preprocess_ms, **turns[0].timings_ms}
    print("timings: " + ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in timings.items()), file=sys.stderr)
    for number, turn in enumerate(turns, 1):
        if "prefill_tokens" in turn.details:  # the runtime's own figures (the vlm backend)
            print(f"turn {number}: {turn_work(turn)}", file=sys.stderr)
    return 0


def turn_work(turn: Description) -> str:
    """What one question cost the NPU, by the runtime's figures."""
    details, timings = turn.details, turn.timings_ms
    encoder = f"encoder {timings['encoder']:.0f} ms" if details.get("encoder_passes") else "no encoder pass"
    prefilled = "?" if details["prefill_tokens"] is None else details["prefill_tokens"]  # a paused 1.2 run
    return (f"{encoder}, prefill {prefilled} tokens in {timings['prefill']:.0f} ms, "
            f"{details['generated_tokens']} tokens generated in {timings['decode']:.0f} ms")


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_vlm.doctor import doctor  # noqa: PLC0415

    return doctor(args.config)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_vlm.run.demo import run_demo  # noqa: PLC0415

    return run_demo(verbose=args.verbose)


DESCRIPTION = ("Describes camera frames in words on a Rockchip NPU (or with the built-in opencv backend) and "
               "publishes them to MQTT, with Home Assistant discovery. Start with `edge-vlm demo` (no board, no "
               "broker needed), then `edge-vlm doctor` on the board.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-vlm", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"edge_vlm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon", description="Run the daemon (as the systemd unit "
                              "does): serve the cameras of the configuration until SIGTERM; SIGHUP reloads it.")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="configuration file")
    run.set_defaults(handler=cmd_run)
    check = commands.add_parser("check", help="validate a configuration file and summarise it",
                                description="Validate a configuration file and what it needs on this machine "
                                "(model files, secrets); print every problem with its line, or a summary.")
    check.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="configuration file")
    check.set_defaults(handler=cmd_check)
    describe = commands.add_parser("describe", help="describe one image file, without MQTT",
                                   description="Describe one JPEG or PNG file with the configured backend, "
                                   "without MQTT; print the text, and the stage timings on stderr.")
    describe.add_argument("image", type=Path, help="JPEG or PNG file")
    describe.add_argument("-c", "--config", type=Path, help="configuration file (for the backend)")
    describe.add_argument("--prompt", help="prompt to use instead of the configured one")
    describe.add_argument("--ask", action="append", default=[], metavar="QUESTION",
                          help="a follow-up question about the same image, answered from what the model kept of it "
                               "(repeatable); each turn's NPU work is shown")
    describe.set_defaults(handler=cmd_describe)
    doctor = commands.add_parser("doctor", help="check this board: NPU driver, runtime, model files, memory, CPUs",
                                 description="Check this board for the vlm backend: the RKNPU driver, the RKLLM "
                                 "runtime, the model files, memory and CPUs; each check says how to fix what fails.")
    doctor.add_argument("-c", "--config", type=Path, help="configuration file (for the model checks)")
    doctor.set_defaults(handler=cmd_doctor)
    demo = commands.add_parser("demo", help="run the whole daemon here with an embedded broker",
                               description="Run the whole daemon here, with an embedded MQTT broker and the "
                               "built-in opencv backend, and show what Home Assistant would see: no board needed.")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the daemon's log")
    demo.set_defaults(handler=cmd_demo)
    add_install_service(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
