import pytest

from edge_vlm.core.redact import redact


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.2:554/s", "rtsp://***:***@10.0.0.2:554/s"),
    ("rtsp://admin:p@ss@cam/s", "rtsp://***:***@cam/s"),  # an @ in the password
    ("http://cam/cgi-bin/snap.cgi?user=admin&password=hunter2&ch=1", "http://cam/cgi-bin/snap.cgi?user=admin&password=***&ch=1"),
    ("rtsp://cam/live;pwd=hunter2/main", "rtsp://cam/live;pwd=***/main"),
    ("fetch http://a:b@c/d then rtsp://e:f@g/h", "fetch http://***:***@c/d then rtsp://***:***@g/h"),
    ("rtsp://cam.local/stream1", "rtsp://cam.local/stream1"),
])
def test_credentials_are_masked_wherever_they_sit_in_a_url(text: str, shown: str) -> None:
    assert redact(text) == shown
