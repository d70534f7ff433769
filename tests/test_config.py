"""Configuration: the example file, every error at once with its line, and the check command."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from edge_vlm.__main__ import main, summary
from edge_vlm.config import AppConfig, load_config, load_config_text, preflight
from edge_vlm.config.mistakes import WHERE_CREDENTIALS_GO
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import ConfigError
from tests.support.npu import vlm_backend

EXAMPLE = Path(__file__).parent.parent / "config" / "edge_vlm.example.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    return caught.value.problems


def test_example_config_is_valid_and_uses_the_defaults() -> None:
    config = load_config(EXAMPLE).config
    assert [c.id for c in config.cameras] == ["front_door", "driveway"]
    assert config.cameras[0].snapshot_topics == ["frigate/front_door/person/snapshot"]
    assert config.mqtt.protocol == "5"
    assert config.client_id == "edge_vlm_board"
    # Every setting the example writes out is the default: the file documents the defaults.
    defaults = load_config_text("cameras: [{id: front_door}, {id: driveway, name: Driveway}]").config
    assert config.model_dump(exclude={"cameras"}) == defaults.model_dump(exclude={"cameras"})


def test_every_problem_is_reported_with_line_path_and_value() -> None:
    text = """\
node_id: board
mqtt:
  port: 70000
  protocol: 4
  password: hunter2
cameras:
  - id: front_door
  - id: Front Door
    snapshot_topics: ["frigate/#/snapshot"]
  - id: yard
    source: {type: mqtt, url: "rtsp://x"}
backend:
  analysis_size: 10
"""
    assert problems(text) == [
        "line 3: mqtt.port: 70000: Input should be less than or equal to 65535",
        "line 4: mqtt.protocol: '4': Input should be '3.1.1' or '5'",
        f"line 5: mqtt.password: {WHERE_CREDENTIALS_GO}",
        "line 8: cameras[1].id: 'Front Door': use 1 to 64 lower-case letters, digits, _ and -, "
        "starting with a letter or digit",
        "line 9: cameras[1].snapshot_topics: 'frigate/#/snapshot': # must be a whole level and the last one",
        "line 11: cameras[2].source.url: 'rtsp://x': no such setting here; the settings here are: "
        "max_frame_age_s, type",
        "line 13: backend.analysis_size: 10: Input should be greater than or equal to 160",
    ]


def test_missing_and_cross_field_problems() -> None:
    assert problems("node_id: hall\n") == ["line 1: cameras: Field required"]
    assert problems("node_id: hall\ncameras:\n  - id: a\n  - id: a\n") == [
        "line 3: cameras: camera id 'a' is used twice: cameras[0] and cameras[1]",
    ]
    assert problems("node_id: hall\ncameras: [{id: hall}]\n") == [
        "line 2: cameras: camera id 'hall' equals node_id: their topics would collide",
    ]
    assert problems("cameras: [{id: a}]\nmqtt:\n  tls: {enabled: true, key_file: /k}\n") == [
        "line 3: mqtt.tls: cert_file and key_file go together: set both or neither",
    ]
    assert problems("cameras: [{id: a}]\nmqtt: {reconnect_min_delay: 30, reconnect_max_delay: 5}\n") == [
        "line 2: mqtt: reconnect_max_delay must be at least reconnect_min_delay",
    ]


def test_yaml_level_problems() -> None:
    assert problems("cameras: [{id: a}]\ncameras: [{id: b}]\n") == [
        "line 2: cameras: key appears twice in the same mapping",
    ]
    assert problems("cameras: [{id: a}\n")[0].startswith("line 2: not valid YAML:")
    assert problems("- just\n- a list\n") == [
        "line 1: (top level): the file must be a mapping of settings, got list",
    ]
    assert problems("") == ["line 1: cameras: Field required"]


def test_the_usual_mistakes_are_explained_in_the_authors_words() -> None:
    """Issue 14: YAML's and pydantic's terms (a null tag, '<block end>', 'Extra inputs') became one
    problem each, with the line and what to do."""
    # a section whose settings were not indented under it: one problem, not one per line
    assert problems("mqtt:\nhost: 127.0.0.1\nport: 1883\ncameras: [{id: a}]\n") == [
        "line 1: mqtt: nothing is indented under it, but host, port below are its settings: indent them "
        "under mqtt: with spaces (two more than mqtt)",
    ]
    assert problems("mqtt:\n    host: 127.0.0.1\n  port: 1883\ncameras: [{id: a}]\n") == [
        "line 3: 'port: 1883' is indented 2 spaces, which lines up with no block above it, line 2 "
        "'host: 127.0.0.1' (4 spaces): the keys of one mapping, and the items of one list, start in the same "
        "column; indent with spaces, two more for what belongs under a key",
    ]
    # a line shown in a problem never shows a password
    shown = problems("cameras:\n  - id: a\n    source:\n      type: rtsp\n      url: rtsp://admin:s3cr3t@cam/x\n"
                     "     mode: persistent\n")
    assert len(shown) == 1 and "'url: rtsp://***:***@cam/x'" in shown[0] and "s3cr3t" not in shown[0]
    assert problems("cameras:\n  - id: a\n    source: {type: rtsp, url: 'rtsp://admin:s3cr3t@cam/x'}\n") == [
        "line 3: cameras[0].source.url: 'rtsp://***:***@cam/x': a password inside the URL can be read by anyone who "
        "reads this file or a copy of it: remove user:password@ from the URL, give the user in username and the "
        "password in password_credential (a systemd credential) or password_env",
    ]
    for url in ("rtsp://admin:pa/Zq9@cam/x", "rtsp://admin:pa#Zq9@cam/x", "rtsp://admin:p@Zq9@cam/x"):  # not urlsplit's
        (problem,) = problems(f"cameras: [{{id: a, source: {{type: rtsp, url: '{url}'}}}}]")
        assert "source.url: 'rtsp://***:***@cam/x': a password inside the URL" in problem and "Zq9" not in problem
    (problem,) = problems("cameras: [{id: a, source: {type: http, url: 'http://admin:pa/ss@cam/x'}}]")
    assert "source.url: 'http://***:***@cam/x': put credentials in username and password_credential" in problem
    assert load_config_text("cameras: [{id: a, source: {type: rtsp, url: 'rtsp://admin@cam/x'}}]").config  # no password
    assert problems("mqtt:\n\thost: 127.0.0.1\ncameras: [{id: a}]\n") == [
        "line 2, column 1: a tab character: YAML indents with spaces only; replace the tab with spaces",
    ]
    assert problems("frigate: {enabeld: true}\ncameras: [{id: a}]\n") == [  # as written, not Python's True
        "line 1: frigate.enabeld: true: no such setting here; did you mean enabled?",
    ]
    assert problems("mqtt:\n  hots: 127.0.0.1\ncameras: [{id: a}]\n") == [
        "line 2: mqtt.hots: '127.0.0.1': no such setting here; did you mean host?",
    ]
    assert problems("cameras:\n  - id: a\n    source: {type: rtsp, url: 'rtsp://cam/s', pasword_env: X}\n") == [
        "line 3: cameras[0].source.pasword_env: 'X': no such setting here; did you mean password_env?",
    ]
    assert problems("cameras: [{id: a}]\nprompt: 'Who: is there'\nlanguage: English: please\n") == [
        "line 3, column 18: a ': ' where a value was expected: put a value that holds ': ' in quotes (\"…\"), "
        "or indent this key under a key that ends with ':'",
    ]


def test_a_secret_value_is_never_echoed() -> None:
    assert problems("cameras: [{id: a}]\nmqtt: {password: s3cret}\n") == [
        f"line 2: mqtt.password: {WHERE_CREDENTIALS_GO}",
    ]


def test_protocol_may_be_written_as_a_number() -> None:
    assert load_config_text("cameras: [{id: a}]\nmqtt: {protocol: 5}").config.mqtt.protocol == "5"
    assert load_config_text("cameras: [{id: a}]\nmqtt: {protocol: '3.1.1'}").config.mqtt.protocol == "3.1.1"


def test_preflight_names_missing_files_and_unset_secrets(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    loaded = load_config_text(
        "cameras: [{id: a}]\n"
        "mqtt:\n"
        "  password_env: EDGE_VLM_TEST_PASSWORD\n"
        "  username: edge\n"
        "  tls:\n"
        "    enabled: true\n"
        f"    ca_file: {ca}\n",
    )
    assert preflight(loaded, {}) == [  # in the order of the file
        "line 3: mqtt.password_env: 'EDGE_VLM_TEST_PASSWORD': the environment variable is not set",
        f"line 7: mqtt.tls.ca_file: '{ca}': file not found",
    ]
    ca.write_text("x")
    assert preflight(loaded, {"EDGE_VLM_TEST_PASSWORD": "pw"}) == []


def test_check_command_prints_all_problems_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: ok\n  - id: 'no/slash'\nmqtt: {port: 0}\n")
    with pytest.raises(SystemExit) as exited:
        main(["check", "-c", str(bad)])
    assert exited.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}: 2 problem(s):",
        "line 3: cameras[1].id: 'no/slash': use 1 to 64 lower-case letters, digits, _ and -, "
        "starting with a letter or digit",
        "line 4: mqtt.port: 0: Input should be greater than or equal to 1",
    ]


def test_check_command_summarises_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{EXAMPLE}: valid"
    assert "front_door (Front door): source mqtt, also frigate/front_door/person/snapshot" in out
    assert "broker 127.0.0.1:1883, MQTT 5, no TLS, anonymous" in out
    assert len(out.splitlines()) <= 24  # one screen


def test_check_warns_when_the_runtime_is_a_build_auto_cannot_identify(
        fake_rkllmrt: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As doctor does (issue 13, point 5): the file is valid, but `auto` cannot bind this library."""
    config = tmp_path / "edge_vlm.yaml"
    config.write_text(yaml.safe_dump({"backend": vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="auto"),
                                      "cameras": [{"id": "porch"}]}))
    assert main(["check", "-c", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"{config}: valid"
    assert captured.err.startswith(f"warning: backend.llm.library {fake_rkllmrt['1.3']}: unknown build (git blob ")
    assert 'set backend.llm.runtime_version to "1.2" (runtime 1.2.1-1.2.3) or "1.3" (1.3.x)' in captured.err


def test_run_refuses_an_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: []\n")
    with pytest.raises(SystemExit) as exited:
        main(["run", "-c", str(bad)])
    assert exited.value.code == 78  # EX_CONFIG: systemd does not restart it (RestartPreventExitStatus=)
    assert "line 1: cameras: List should have at least 1 item after validation, not 0" in capsys.readouterr().err
    assert main(["check", "-c", str(EXAMPLE)]) == 0


def test_unreadable_file_is_one_clear_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "-c", str(tmp_path / "missing.yaml")])
    assert "missing.yaml: cannot read the configuration file: No such file or directory" in capsys.readouterr().err


def _types_in(annotation: object) -> list[object]:
    """Every type an annotation mentions, through unions, Annotated and containers."""
    return [annotation, *(t for arg in get_args(annotation) for t in _types_in(arg))]


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for kind in _types_in(field.annotation):
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in found:
                found |= _models(kind)
    return found


def test_every_setting_is_described_and_numbers_are_bounded() -> None:
    models = _models(AppConfig)
    names = {m.__name__ for m in models}
    assert {"RtspSourceConfig", "VlmBackendConfig", "MotionConfig", "ImgencEncoderConfig"} <= names
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            scalar = {t for t in (field.annotation, *get_args(field.annotation)) if t is not type(None)}
            if scalar and scalar <= {int, float}:  # int, float, or either of them or None
                bounds = {type(m).__name__ for m in field.metadata}
                assert bounds & {"Ge", "Gt"} and bounds & {"Le", "Lt"}, f"{model.__name__}.{name} is not bounded"


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = "cameras:\n  - &outdoor {id: yard, enabled: false}\n  - <<: *outdoor\n    id: gate\n"
    cameras = load_config_text(text).config.cameras
    assert [(c.id, c.enabled) for c in cameras] == [("yard", False), ("gate", False)]


def test_yaml_that_cannot_be_config_is_reported_not_crashed_on() -> None:
    assert problems("cameras: [{id: a}]\nmqtt:\n  password_env: !secret mqtt_password\n") == [
        "line 3: mqtt.password_env: the YAML tag !secret is not supported "
        "(secrets come from environment variables: see mqtt.password_env)",
    ]
    assert problems("cameras: [{id: a}]\n? [complex, key]\n: 1\n") == ["line 2: (top level): a key must be plain text"]
    assert problems("cameras: [{id: a}]\nmqtt: {<<: 5}\n") == ["line 2: mqtt: << must merge a mapping"]


@pytest.mark.parametrize(("topic_filter", "echo"), [
    ("#", "edge_vlm/board/status"),
    ("edge_vlm/#", "edge_vlm/board/status"),
    ("edge_vlm/yard/+", "edge_vlm/yard/description"),
    ("+/+/image", "edge_vlm/yard/image"),
    ("homeassistant/device/#", "homeassistant/device/edge_vlm_board/yard/config"),
])
def test_snapshot_topics_may_not_match_what_the_daemon_publishes(topic_filter: str, echo: str) -> None:
    assert problems(f"cameras: [{{id: yard, snapshot_topics: ['{topic_filter}']}}]\n") == [
        f"line 1: cameras: cameras[0].snapshot_topics: {topic_filter!r} matches {echo}, which edge_vlm "
        "publishes itself: it would describe its own output",
    ]
    assert load_config_text("cameras: [{id: yard, snapshot_topics: ['frigate/yard/+/snapshot']}]\n")


def test_the_example_npu_backend_is_valid_too() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# backend:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    text = "cameras: [{id: a}]\n" + "\n".join(block)
    backend = load_config_text(text).config.backend
    assert isinstance(backend, VlmBackendConfig)
    assert (backend.family, backend.encoder.type, backend.llm.runtime_version) == ("qwen3-vl-2b", "rknn", "auto")


def test_an_npu_config_whose_context_cannot_hold_prompt_image_and_answer_is_refused() -> None:
    text = ("cameras: [{id: a}]\nbackend:\n  type: vlm\n  family: qwen2-vl-2b\n"
            "  encoder: {type: onnx, model: /m.onnx}\n  llm: {model: /m.rkllm, max_context_len: 256}\n")
    assert problems(text) == [
        "line 3: backend: the default prompt: about 56 prompt tokens + 196 image tokens + 128 new tokens "
        "(llm.max_new_tokens) = 380 do not fit llm.max_context_len = 256",
    ]


def test_preflight_names_missing_model_files(tmp_path: Path) -> None:
    loaded = load_config_text(
        f"cameras: [{{id: a}}]\nbackend:\n  type: vlm\n  family: qwen2-vl-2b\n"
        f"  encoder: {{type: imgenc, executable: {tmp_path}/imgenc, model: {tmp_path}/v.rknn}}\n"
        f"  llm: {{model: {tmp_path}/m.rkllm, library: {tmp_path}/librkllmrt.so}}\n")
    assert preflight(loaded, {}) == [
        f"line 5: backend.encoder.model: '{tmp_path}/v.rknn': file not found (models/README.md says where to get it)",
        f"line 5: backend.encoder.executable: '{tmp_path}/imgenc': file not found (built from rknn-llm: "
        "models/README.md, Building imgenc)",
        f"line 6: backend.llm.model: '{tmp_path}/m.rkllm': file not found (models/README.md says where to get it)",
        f"line 6: backend.llm.library: '{tmp_path}/librkllmrt.so': file not found (models/README.md says where to "
        "get it)",
    ]


def test_frigate_settings_are_checked() -> None:
    base = "cameras: [{id: door, snapshot_topics: ['frigate/door/+/snapshot'], frigate: {}}]\n"
    assert problems(base + "frigate: {enabled: true}\n") == [
        "line 1: cameras[0]: its snapshot_topics take Frigate's snapshots, which its frigate events "
        "describe already: remove one or the other",
    ]
    assert problems("cameras: [{id: door}]\nfrigate: {enabled: true, api_url: 'http://admin:pw@frigate:5000'}\n") == [
        "line 2: frigate.api_url: 'http://***:***@frigate:5000': Frigate's API takes no credentials in the URL",
    ]


def test_two_cameras_may_share_a_frigate_camera_only_with_filters_that_do_not_overlap() -> None:
    frigate = "frigate: {enabled: true}\n"
    apart = load_config_text(frigate + "cameras:\n  - {id: people, frigate: {camera: yard, labels: [person]}}\n"
                             "  - {id: cars, frigate: {camera: yard, labels: [car]}}\n")
    assert [c.frigate.labels for c in apart.config.cameras if c.frigate] == [["person"], ["car"]]
    overlap = ("line 4: cameras[1].frigate: Frigate's camera 'yard' is cameras[0]'s too, and an event could pass "
               "both filters: give them labels that do not overlap (zones cannot: an object may enter both)")
    assert problems(frigate + "cameras:\n  - {id: people, frigate: {camera: yard, labels: [person]}}\n"
                    "  - {id: yard, frigate: {zones: [lawn]}}\n") == [overlap]
    assert problems(frigate + "cameras:\n  - {id: porch, frigate: {camera: yard, zones: [porch]}}\n"
                    "  - {id: gate, frigate: {camera: yard, zones: [gate]}}\n") == [overlap]
    assert problems("frigate: {enabled: true}\nmqtt: {shared_group: house}\ncameras: [{id: yard, frigate: {}}]\n") == [
        "line 3: cameras[0].frigate: with mqtt.shared_group each board hears only its share of Frigate's events, "
        "and cannot tell whose a snapshot is: set frigate.api_url",
    ]
    assert problems(frigate + "cameras: [{id: yard, frigate: {name_wait_s: 5, event_types: [new]}}]\n") == [
        "line 2: cameras[0].frigate: name_wait_s waits for an update that brings a name: event_types must include "
        "update",
    ]
    assert problems(frigate + "cameras: [{id: yard, frigate: {reviews: [alert]}}]\n") == [
        "line 2: cameras[0].frigate.reviews: review items need frigate.api_url: one often holds two objects of a "
        "label, whose snapshots only Frigate's API tells apart",
    ]
    api = "frigate: {enabled: true, api_url: 'http://frigate:5000'}\n"
    assert problems(api + "cameras:\n  - {id: people, frigate: {camera: yard, labels: [person], reviews: [alert]}}\n"
                    "  - {id: cars, frigate: {camera: yard, labels: [car], reviews: [alert]}}\n") == [
        "line 4: cameras[1].frigate: Frigate's camera 'yard' is cameras[0]'s too, and both describe its review "
        "items: one review item holds every object of the camera, so only one camera can describe them",
    ]
    assert problems(api + "cameras: [{id: yard, frigate: {reviews: [alert], again_when_named: true}}]\n") == [
        "line 2: cameras[0].frigate: name_wait_s and again_when_named are for events: a review item is described "
        "again when a name comes anyway",
    ]


def test_an_rtsp_password_needs_a_user() -> None:
    assert problems("cameras: [{id: a, source: {type: rtsp, url: 'rtsp://h/s', password_env: PW}}]\n") == [
        "line 1: cameras[0].source: password_env needs username",
    ]


def test_alert_rules_that_could_never_fire_are_refused() -> None:
    camera = "cameras: [{id: door, alerts: [%s]}]\n"
    assert problems(camera % "{name: a, field: peeple, above: 1}") == [
        "line 1: cameras[0].alerts[0].field: 'peeple' is no field of any profile (known: brightness, "
        "faces, light, motion, motion_fraction, people)",
    ]
    assert problems(camera % "{name: a, field: light, above: 1}") == [
        "line 1: cameras[0].alerts[0].field: 'light' is a string: `above` needs a number",
    ]
    assert problems(camera % "{name: a, keywords: [parcel], above: 1}") == [
        "line 1: cameras[0].alerts[0]: above and equals are for field rules",
    ]
    assert problems(camera % "{name: a, keywords: ['']}") == [
        "line 1: cameras[0].alerts[0].keywords[0]: '': String should have at least 1 character",
    ]
    load_config_text(camera % "{name: a, field: people, above: 1}")  # the opencv backend's count: fine


def test_a_field_has_one_type_in_every_profile() -> None:
    field = "{type: %s, description: d}"
    text = f"""\
backend: {{type: vlm, family: qwen2-vl-2b, encoder: {{type: onnx, model: e.onnx}}, llm: {{model: m.rkllm}}}}
profiles:
  a: {{prompt: p, fields: {{count: {field % 'integer'}, mood: {field % 'string'}}}}}
  b: {{prompt: p, fields: {{count: {field % 'boolean'}}}}}
cameras: [{{id: door}}]
"""
    assert problems(text) == [
        "line 4: profiles.b.fields.count: boolean, but another profile's count is a number: "
        "one entity cannot be both",
    ]
    assert problems(text.replace("count: {type: boolean", "mood: {type: integer")) == [
        "line 4: profiles.b.fields.mood: integer, but another profile's mood is a string: "
        "one entity cannot be both",
    ]


def test_a_unit_needs_a_number() -> None:
    assert problems("profiles: {a: {prompt: p, fields: {who: {type: string, description: d, unit: m}}}}\n"
                    "cameras: [{id: door}]\n")[0].endswith(
        "unit is for integer and number fields (Home Assistant wants a number with a unit)")


def test_every_prompt_in_the_file_has_its_placeholders_checked() -> None:
    use = ("unknown placeholder(s) ['{0}']; "
           "use ['camera', 'time', 'span', 'label', 'sub_label', 'zones', 'previous', 'language']")
    assert problems('prompt: "hi {nope}"\ncameras: [{id: a}]\n') == [
        f"line 1: prompt: 'hi {{nope}}': {use.format('nope')}"]
    assert problems('cameras: [{id: a, prompt: "x {bad}"}]\n') == [
        f"line 1: cameras[0].prompt: 'x {{bad}}': {use.format('bad')}"]
    assert problems('profiles: {p: {prompt: "{zz}"}}\ncameras: [{id: a}]\n') == [
        f"line 1: profiles.p.prompt: '{{zz}}': {use.format('zz')}"]
    assert problems('frigate: {enabled: true}\ncameras: [{id: a, frigate: {prompts: {person: "{q}"}}}]\n') == [
        f"line 2: cameras[0].frigate.prompts.person: '{{q}}': {use.format('q')}"]


@pytest.mark.parametrize(("setting", "topic_filter", "problem"), [
    ("reply_topics", "$SYS/#", "$ topics are the broker's ($SYS) or shared subscriptions, never a request's"),
    ("reply_topics", "#", "it reaches into homeassistant/…, Home Assistant's topics"),
    ("image_topics", "+/status", "it reaches into homeassistant/…, Home Assistant's topics"),
    ("reply_topics", "answers/#/x", "# must be a whole level and the last one"),
    ("image_topics", "pictures/a+", "+ must be a whole level"),
])
def test_request_topic_filters_must_be_valid_and_stay_out_of_the_broker_and_home_assistant(
        setting: str, topic_filter: str, problem: str) -> None:
    assert problems(f"cameras: [{{id: yard}}]\nmqtt:\n  {setting}: ['{topic_filter}']\n") == [
        f"line 3: mqtt.{setting}: {topic_filter!r}: {problem}"]


@pytest.mark.parametrize(("setting", "topic_filter", "ours"), [
    ("reply_topics", "edge_vlm/#", "edge_vlm/board/status"),
    ("reply_topics", "edge_vlm/+/enabled", "edge_vlm/yard/enabled"),
    ("reply_topics", "edge_vlm/+/+/set", "edge_vlm/yard/enabled/set"),
    ("reply_topics", "edge_vlm/+/snapshot", "edge_vlm/yard/snapshot"),
    ("reply_topics", "edge_vlm/request", "edge_vlm/request"),
    ("image_topics", "edge_vlm/+/attributes", "edge_vlm/yard/attributes"),
])
def test_request_topic_filters_may_not_cover_the_daemons_own_topics(setting: str, topic_filter: str,
                                                                     ours: str) -> None:
    """A reply there would be taken for the daemon's status, a state or a command."""
    assert problems(f"cameras: [{{id: yard}}]\nmqtt:\n  {setting}: ['{topic_filter}']\n") == [
        f"line 3: mqtt.{setting}: {topic_filter!r} matches {ours}, a topic of edge_vlm's own"]


def test_request_topic_filters_may_name_their_own_subtrees() -> None:
    text = ("cameras: [{id: yard}]\ndiscovery: {prefix: ha}\nmqtt:\n"
            "  reply_topics: [edge_vlm/response/#, answers/+/edge]\n"
            "  image_topics: [edge_vlm/images/#, edge_vlm/+/image, edge_vlm/yard/snapshot, cams/#]\n")
    mqtt = load_config_text(text).config.mqtt
    assert mqtt.reply_topics == ["edge_vlm/response/#", "answers/+/edge"]
    assert mqtt.image_topics == ["edge_vlm/images/#", "edge_vlm/+/image", "edge_vlm/yard/snapshot", "cams/#"]
    assert problems(text.replace("cams/#", "ha/#")) == [
        "line 5: mqtt.image_topics: 'ha/#' reaches into the discovery prefix ha/"]


def test_a_clip_needs_a_source_that_keeps_frames_coming() -> None:
    on_demand = "{type: rtsp, url: 'rtsp://cam/1', mode: on_demand}"
    assert problems(f"cameras: [{{id: a, source: {on_demand}, clip: {{}}}}]\n") == [
        "line 1: cameras[0]: clip needs frames coming all the time: an rtsp source in mode persistent (on_demand "
        "connects only when asked), an http source (polled at clip.fps) or mqtt snapshots"]
    config = load_config_text("cameras: [{id: a, clip: {fps: 1}}, {id: b, source: {type: http, url: 'http://c/s.jpg'}, "
                              "clip: {}}, {id: c, source: {type: rtsp, url: 'rtsp://c/1'}, clip: {seconds: 5}}]\n")
    assert [(c.clip.seconds, c.clip.fps) for c in config.config.cameras if c.clip] == [(10, 1), (10, 2), (5, 2)]
    assert "  b (B): source http http://c/s.jpg, clip 10 s (26.3 MB at most)" in summary(config.config).splitlines()
    assert problems("frigate: {enabled: true}\ncameras: [{id: a, frigate: {clip: true}}]\n") == [
        "line 2: cameras[0]: frigate.clip describes events with the camera's last seconds: set clip too"]


def test_the_http_api_needs_a_key_unless_it_is_on_loopback_and_says_so() -> None:
    assert load_config_text("cameras: [{id: a}]\n").config.http.enabled is False  # off by default
    assert problems("cameras: [{id: a}]\nhttp: {enabled: true}\n") == [
        "line 2: http: the API needs a key: set api_key_env or api_key_credential (or allow_no_key, on a loopback "
        "bind address only)"]
    assert problems("cameras: [{id: a}]\nhttp: {enabled: true, allow_no_key: true, bind: 0.0.0.0}\n") == [
        "line 2: http: allow_no_key serves anyone who can reach 0.0.0.0: only on a loopback bind address "
        "(127.0.0.1); set api_key_env or api_key_credential instead"]
    assert problems("cameras: [{id: a}]\nhttp: {enabled: true, api_key_env: K, bind: board.local}\n") == [
        "line 2: http.bind: 'board.local': an IP address, e.g. 127.0.0.1, 192.168.1.10 or 0.0.0.0"]
    http = load_config_text("cameras: [{id: a}]\nhttp: {enabled: true, api_key_env: K, bind: 0.0.0.0}\n").config.http
    assert (http.port, http.model_names) == (11434, ("edge-vlm", "edge-vlm:latest"))
    loaded = load_config_text("cameras: [{id: a}]\nhttp:\n  enabled: true\n  api_key_env: EDGE_VLM_TEST_KEY\n")
    assert preflight(loaded, {}) == [
        "line 4: http.api_key_env: 'EDGE_VLM_TEST_KEY': the environment variable is not set"]
    assert preflight(loaded, {"EDGE_VLM_TEST_KEY": "k" * 16}) == []
    assert preflight(loaded, {"EDGE_VLM_TEST_KEY": ""}) == [  # an empty variable is no key
        "line 4: http.api_key_env: the API key is unset, empty or shorter than 16 characters: set a long random one "
        "(openssl rand -hex 24)"]
    assert preflight(loaded, {"EDGE_VLM_TEST_KEY": "q1w2e3r4/t5y6u7i8+o9p0AB=="}) == [  # base64: a / in a URL path
        "line 4: http.api_key_env: the API key holds characters other than letters, digits, '.', '_', '~' and '-' "
        "(it goes in URLs): set one made by openssl rand -hex 24"]


def test_image_url_hosts_name_the_hosts_and_ports_whose_urls_are_fetched() -> None:
    assert load_config_text("cameras: [{id: a}]\n").config.http.fetches("http://camera.lan/a.jpg") is False
    http = load_config_text("cameras: [{id: a}]\nhttp: {image_url_hosts: [Camera.LAN, 'ha.local:8123', "
                            "'[fd00::5]:443', 10.0.0.7]}\n").config.http
    allowed = ["http://camera.lan/a.jpg", "https://CAMERA.lan:8443/a.jpg", "http://ha.local:8123/api/image",
               "https://[fd00::5]/a.jpg", "http://10.0.0.7:81/x"]
    refused = ["http://ha.local/api/image", "http://ha.local:8124/", "ftp://camera.lan/a.jpg", "http://[fd00::5]/a",
               "http://camera.lan.evil.example/a.jpg", "http://10.0.0.70/x", "http://camera.lan:99999/", "file:///etc",
               "http://evil.example@camera.lan/a.jpg", "http://camera.lan\\@evil.example/", "http://u:p@camera.lan/"]
    assert [http.fetches(url) for url in allowed] == [True] * 5
    assert [http.fetches(url) for url in refused] == [False] * 11
    assert problems("cameras: [{id: a}]\nhttp: {image_url_hosts: ['http://camera.lan']}\n") == [
        "line 2: http.image_url_hosts: 'http://camera.lan' is no host name or address with an optional port "
        "(camera.lan, 192.168.1.20, homeassistant.local:8123, [fd00::5]:8123)"]
