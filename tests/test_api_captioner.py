"""The api:MODEL captioner against a real chat-completions server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

import cmcodec
from cmcodec import codec
from cmcodec.bench import evaluate as ev
from cmcodec.core.errors import ConfigError, ModelError
from cmcodec.models import api_i2t, i2t

KEY = "sk-test-0123456789"
Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


def ok(text: object) -> Reply:
    return 200, {}, json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode()


@dataclass
class Server:
    """A chat-completions server: ``reply(request_json, headers)`` answers each POST; requests are kept."""

    url: str
    reply: Callable[[dict, dict], Reply | None] = lambda body, headers: ok("A red house with white windows.")
    requests: list[tuple[str, dict, dict]] = field(default_factory=list)


def image_of(body: dict) -> Image.Image:
    """The picture a request carries (its base64 data URL decoded)."""
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    head, b64 = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.loads(raw)
            headers = {k.lower(): v for k, v in self.headers.items()}
            srv.requests.append((self.path, headers, body))
            got = srv.reply(body, headers)
            if got is None:  # the handler slept past the client's timeout; nothing more to send
                return
            status, extra, data = got
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    srv.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: Server) -> Server:
    monkeypatch.setenv(api_i2t.ENV_KEY, KEY)
    monkeypatch.setenv(api_i2t.ENV_BASE, server.url)
    monkeypatch.delenv(api_i2t.ENV_OFFLINE, raising=False)
    monkeypatch.delenv(api_i2t.ENV_OPENAI_KEY, raising=False)
    return server


def fast(server: Server, retries: int = 2, timeout: float = 2.0) -> api_i2t.ApiConfig:
    return api_i2t.ApiConfig(base=server.url, timeout=timeout, retries=retries, backoff=0.01)


def caption_each(server: Server, n: int = 1, **kw: object) -> list:
    img = Image.open(HOUSE)
    return api_i2t.caption_each([img] * n, model="api:gpt-4o", prompt="Describe.", max_tokens=40,
                                cfg=fast(server, **kw))  # type: ignore[arg-type]


def test_request_shape_image_and_key(env: Server) -> None:
    cap = i2t.caption(Image.open(HOUSE), model="api:gpt-4o", words=5)
    assert cap == "A red house with white"  # cut to the word budget like every captioner
    (path, headers, body), = env.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {KEY}" and headers["content-type"] == "application/json"
    assert body["model"] == "gpt-4o" and body["temperature"] == 0 and body["max_tokens"] == 10
    assert [m["role"] for m in body["messages"]] == ["user"]
    text, img = body["messages"][0]["content"]
    assert img["type"] == "image_url" and set(img["image_url"]) == {"url"}
    assert text == {"type": "text", "text": i2t.prompt_for(i2t.API_CAPTIONER, 5)}
    assert "in 5 words" in text["text"]
    sent = np.asarray(image_of(body).convert("RGB"), dtype=float)
    orig = np.asarray(Image.open(HOUSE).convert("RGB"), dtype=float)
    assert sent.shape == orig.shape and np.abs(sent - orig).mean() < 3  # the image itself, JPEG q95 4:4:4


def test_encode_text_mode_file_with_api_caption(env: Server) -> None:
    env.reply = lambda body, headers: ok([{"type": "text", "text": "two parrots on a branch"}])  # parts form
    r = codec.encode_result(PARROTS, mode="text", options=codec.EncodeOptions(i2t="api:llava", caption_words=8))
    assert r.caption == "Two parrots on a branch"
    h = cmcodec.read_header(r.data)
    assert h.mode == "text" and h.width == 192 and env.requests[0][2]["model"] == "llava"
    again = codec.encode_result(PARROTS, mode="text", options=codec.EncodeOptions(i2t="api:llava", caption_words=8))
    assert again.data == r.data  # same answer, same file


def test_large_images_are_sent_at_what_the_server_looks_at(env: Server) -> None:
    i2t.caption(Image.new("RGB", (3000, 1000), (200, 30, 30)), model="api:m", words=5)
    assert image_of(env.requests[0][2]).size == (2048, 683)  # fits 2048, short side <= 768, never upscaled


def test_openai_key_is_never_sent_to_another_server(env: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(api_i2t.ENV_KEY)
    monkeypatch.setenv(api_i2t.ENV_OPENAI_KEY, "sk-openai")
    i2t.caption(Image.open(HOUSE), model="api:m", words=5)
    assert "authorization" not in env.requests[0][1]  # local servers need no key
    monkeypatch.setenv(api_i2t.ENV_BASE, "https://api.openai.com/v1")
    assert api_i2t.api_key(api_i2t.ApiConfig.from_env()) == "sk-openai"
    monkeypatch.delenv(api_i2t.ENV_OPENAI_KEY)
    with pytest.raises(ModelError, match=r"OpenAI API needs a key: set \$CMCODEC_API_KEY"):
        i2t.caption(Image.open(HOUSE), model="api:gpt-4o", words=5)  # refused before any connection


def test_rate_limit_retry_after_is_honoured(env: Server) -> None:
    seen: list[float] = []

    def reply(body: dict, headers: dict) -> Reply:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return 429, {"Retry-After": "0.3"}, b'{"error": {"message": "Rate limit reached"}}'
        return ok("A house.")

    env.reply = reply
    assert caption_each(env) == ["A house."]
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.28  # waited what the server asked, not the 0.01 s backoff
    env.requests.clear()
    env.reply = lambda b, h: (429, {"Retry-After": "3600"}, b'{"error": {"message": "quota"}}')
    t = time.monotonic()
    (err,) = caption_each(env)
    assert isinstance(err, ModelError) and time.monotonic() - t < 5 and len(env.requests) == 1
    assert "HTTP 429: quota; the server asks to wait 3600 s, more than 60 s" in str(err)


def test_server_errors_are_retried_with_backoff(env: Server) -> None:
    n = {"calls": 0}

    def flaky(body: dict, headers: dict) -> Reply:
        n["calls"] += 1
        return (503, {}, b"overloaded") if n["calls"] <= 2 else ok("A house.")

    env.reply = flaky
    assert caption_each(env, retries=2) == ["A house."] and n["calls"] == 3
    n["calls"] = -10
    (err,) = caption_each(env, retries=2)
    assert str(err).endswith("HTTP 503: overloaded (after 3 attempts)") and n["calls"] == -7
    assert str(err).startswith(f"captioner api:gpt-4o at {env.url}: ")


def test_timeout_is_a_one_line_error(env: Server) -> None:
    def slow(body: dict, headers: dict) -> None:
        time.sleep(0.6)

    env.reply = slow
    t = time.monotonic()
    (err,) = caption_each(env, retries=1, timeout=0.2)
    assert isinstance(err, ModelError) and "no answer within 0.2 s (after 2 attempts)" in str(err)
    assert time.monotonic() - t < 3 and len(env.requests) == 2


@pytest.mark.parametrize(("reply", "message"), [
    (ok(""), "the server returned no text (finish_reason 'stop')"),
    (ok(None), "expected text in choices[0].message.content, found NoneType"),
    ((200, {}, b'{"data": []}'), "expected a chat-completions answer with choices[0].message.content, found ['data']"),
    ((200, {}, b'{"choices": []}'), "expected a chat-completions answer"),
    ((200, {}, b"<html>proxy login</html>"), "expected a JSON answer, found '<html>proxy login</html>'"),
    ((401, {}, b'{"error": {"message": "Incorrect API key"}}'), "HTTP 401 (check $CMCODEC_API_KEY): Incorrect API key"),
    ((404, {}, b'{"error": "model not found"}'), "HTTP 404 (check --api-base and the model name): model not found"),
    ((400, {}, b'{"error": {"message": "this model does not accept images"}}'), "HTTP 400: this model does not accept"),
])
def test_wrong_answers_are_final_one_line_errors(env: Server, reply: Reply, message: str) -> None:
    env.reply = lambda b, h: reply
    (err,) = caption_each(env, retries=3)
    assert isinstance(err, ModelError) and message in str(err)
    assert "\n" not in str(err) and KEY not in str(err)
    assert len(env.requests) == 1  # not retried: asking again would get the same answer


def test_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = api_i2t.ApiConfig(base=f"http://127.0.0.1:{port}/v1", timeout=1, retries=1, backoff=0.01)
    monkeypatch.delenv(api_i2t.ENV_OFFLINE, raising=False)
    (err,) = api_i2t.caption_each([Image.open(HOUSE)], model="m", prompt="p", max_tokens=8, cfg=cfg)
    assert "cannot connect" in str(err) and "after 2 attempts" in str(err)


def test_batch_keeps_the_captions_of_the_images_that_worked(env: Server) -> None:
    env.reply = lambda b, h: ok("A parrot.") if image_of(b).size == (192, 128) else (400, {}, b"bad image")
    imgs = [Image.open(PARROTS), Image.open(HOUSE), Image.open(PARROTS)]
    out = i2t.caption_each(imgs, model="api:m", words=5)
    assert out[0] == out[2] == "A parrot." and isinstance(out[1], ModelError)
    with pytest.raises(ModelError, match="HTTP 400: bad image"):
        i2t.caption_batch(imgs, model="api:m", words=5)
    got = dict(codec.caption_many([PARROTS, HOUSE], codec.EncodeOptions(i2t="api:m", caption_words=5), batch_size=2))
    assert got[0] == "A parrot." and isinstance(got[1], ModelError)


def test_offline_and_bad_settings_are_refused(env: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(api_i2t.ENV_OFFLINE, "1")
    with pytest.raises(ModelError, match=r"sends each image to a server, which an offline run \(--offline"):
        i2t.caption(Image.open(HOUSE), model="api:gpt-4o")
    assert env.requests == []
    monkeypatch.delenv(api_i2t.ENV_OFFLINE)
    with pytest.raises(ConfigError, match="expected api:MODEL"):
        i2t.caption(Image.open(HOUSE), model="api:")
    with pytest.raises(ConfigError, match="expected an http"):
        api_i2t.ApiConfig(base="127.0.0.1:8000/v1")
    monkeypatch.setenv(api_i2t.ENV_TIMEOUT, "soon")
    with pytest.raises(ConfigError, match=r"\$CMCODEC_API_TIMEOUT: expected a number, found 'soon'"):
        api_i2t.ApiConfig.from_env()


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env})


def _folder(path: Path, **extra: bytes) -> Path:
    """a.png parrots, b.png the house (the size the servers below fail), c.png parrots mirrored, then extra files."""
    path.mkdir()
    Image.open(PARROTS).save(path / "a.png")
    Image.open(HOUSE).save(path / "b.png")
    Image.open(PARROTS).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path / "c.png")
    for name, data in extra.items():
        (path / name).write_bytes(data)
    return path


def test_cli_evaluate_continues_past_a_failed_and_an_unreadable_image(server: Server, tmp_path: Path) -> None:
    # one batch of 4: the server fails the house, the broken file cannot be read; the other two go on
    server.reply = lambda b, h: (400, {}, b"no house") if image_of(b).size == (96, 64) else ok("Two parrots.")
    gt = _folder(tmp_path / "gt", **{"d.png": b"\x89PNG\r\n\x1a\n broken"})
    out = tmp_path / "runs"
    env = {api_i2t.ENV_KEY: KEY, api_i2t.ENV_RETRIES: "0"}
    r = cli("evaluate", str(gt), "-o", str(out), "--i2t", "api:gpt-4o", "--api-base", server.url, "--profiles",
            "classic", "--modes", "pixel,image", "--fr", "psnr", "--nr", "piqe", "--device", "cpu", env=env, timeout=600)
    assert r.returncode == 1, r.stderr
    assert "2 image(s) failed (unreadable, or no caption)" in r.stderr and "b (api:gpt-4o): captioner api:gpt-4o at" in r.stderr
    assert "HTTP 400: no house" in r.stderr and "d (api:gpt-4o): " in r.stderr and KEY not in r.stderr + r.stdout
    assert len(server.requests) == 3  # one batch, the unreadable image never sent
    assert set(ev.read_captions(out / "captions" / "api-gpt-4o.csv")) == {"a", "c"}
    run = out / "api-gpt-4o__classic"
    scores = json.loads((run / "scores.json").read_text())
    assert {m: scores["modes"][m]["images"] for m in ("pixel", "image")} == {"pixel": 2, "image": 2}
    assert set(scores["images_failed"]) == {"b", "d"} and "no house" in scores["images_failed"]["b"]
    assert sorted(p.name for p in (run / "image").iterdir()) == ["a.cmc", "a.png", "c.cmc", "c.png"]
    assert "api-gpt-4o__classic" in r.stdout  # the leaderboard is written and printed


def test_cli_folder_encode_continues_past_a_failed_image(server: Server, tmp_path: Path) -> None:
    server.reply = lambda b, h: (500, {}, b"GPU fell over") if image_of(b).size == (96, 64) else ok("Two parrots.")
    src = _folder(tmp_path / "in")
    env = {api_i2t.ENV_KEY: KEY, api_i2t.ENV_RETRIES: "1"}
    r = cli("encode", str(src), "-o", str(tmp_path / "out"), "--i2t", "api:gpt-4o", "--api-base", server.url, env=env)
    assert r.returncode == 1, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.cmc")) == ["a.cmc", "c.cmc"]
    assert "1 of 3 files failed" in r.stderr and "b.png: captioner api:gpt-4o at" in r.stderr
    assert "HTTP 500: GPU fell over (after 2 attempts)" in r.stderr
    assert KEY not in r.stderr + r.stdout
    assert cmcodec.codec.validate((tmp_path / "out/a.cmc").read_bytes()).mode == "text"
    assert len(server.requests) == 4  # a, c once; b twice (one retry)
    assert all(h["authorization"] == f"Bearer {KEY}" for _, h, _ in server.requests)

    n = len(server.requests)
    r = cli("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--i2t", "api:gpt-4o", "--api-base", server.url,
            "--offline", env=env)
    assert r.returncode == 7 and "offline run" in r.stderr and r.stderr.count("\n") == 1
    assert len(server.requests) == n and not (tmp_path / "x.cmc").exists()
    r = cli("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--api-base", server.url, env=env)
    assert r.returncode == 2 and "--api-base" in r.stderr and "applies to an api:MODEL captioner" in r.stderr


# --- a hostile server, held ------------------------------------------------------------------------------

@pytest.fixture
def raw_server() -> Iterator[tuple[str, Callable[[Callable], None]]]:
    """A TCP server on 127.0.0.1 whose handler gets the raw socket (for answers http.server cannot send:
    trickles, partial headers); set(handler) picks the handler of the next connections."""
    import socket

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(0.1)
    state: dict = {"handler": None, "stop": False}

    def loop() -> None:
        while not state["stop"]:
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            threading.Thread(target=lambda c=conn: _serve_raw(c, state["handler"]), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    yield f"http://127.0.0.1:{lsock.getsockname()[1]}/v1", lambda h: state.__setitem__("handler", h)
    state["stop"] = True
    lsock.close()


def _serve_raw(conn, handler) -> None:
    with conn:
        conn.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            n = int(next(x.split(b":")[1] for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")))
            while len(rest) < n:
                rest += conn.recv(65536)
            handler(conn)
        except OSError:
            pass


def _trickle(conn, head: bytes = b"", every: float = 0.05, total: float = 5.0) -> None:
    """Headers (or nothing), then one byte of a never-ending body every ``every`` seconds for ``total`` s."""
    conn.sendall(head)
    end = time.monotonic() + total
    while time.monotonic() < end:
        conn.sendall(b" ")
        time.sleep(every)


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999\r\n\r\n",
                                  b""], ids=["trickled-body", "trickled-headers"])
def test_a_trickling_server_is_held_to_the_total_deadline(raw_server, monkeypatch: pytest.MonkeyPatch,
                                                          head: bytes) -> None:
    url, set_handler = raw_server
    # trickled headers: a status line that never ends; trickled body: a byte every 50 ms of a 99999-byte body
    set_handler(lambda c: _trickle(c, head or b"HTTP/1.1 200 OK\r\nX-Slow: "))
    monkeypatch.delenv(api_i2t.ENV_OFFLINE, raising=False)
    cfg = api_i2t.ApiConfig(base=url, timeout=0.6, retries=1, backoff=0.01)
    t = time.monotonic()
    (err,) = api_i2t.caption_each([Image.open(HOUSE)], model="m", prompt="p", max_tokens=8, cfg=cfg)
    took = time.monotonic() - t
    assert isinstance(err, ModelError) and "no answer within 0.6 s (after 2 attempts)" in str(err), err
    assert took < 2 * 0.6 + 1.5  # two attempts of 0.6 s, not one per trickled byte


def _deep(n: int) -> bytes:
    return b'{"choices": [{"message": {"content": ' + b"[" * n + b"]" * n + b"}}]}"


@pytest.mark.parametrize(("reply", "message"), [
    ((200, {}, _deep(100_000)), "found JSON nested deeper than 32"),
    ((200, {}, _deep(40)), "found JSON nested deeper than 32"),
    (ok([{"type": "text", "text": 5}]), "expected text parts with a string 'text', found int"),
    (ok([{"type": "text", "text": ["a"]}]), "expected text parts with a string 'text', found list"),
    ((200, {}, b'{"choices": [{"message": {"content": "A \\ud800 house"}}]}'),
     "expected Unicode text, found U+D800 at character 2"),
    ((200, {}, b'{"choices": "nope"}'), "expected a chat-completions answer"),
    ((200, {}, b'{"choices": [{"message": {"content": ""}, "finish_reason": {"deep": [1, 2]}}]}'),
     "the server returned no text"),
    ((200, {}, b'[1, 2, 3]'), "expected a chat-completions answer with choices[0].message.content, found list"),
])
def test_malformed_answers_are_one_line_errors(env: Server, reply: Reply, message: str) -> None:
    env.reply = lambda b, h: reply
    (err,) = caption_each(env, retries=0)
    assert isinstance(err, ModelError) and message in str(err) and "\n" not in str(err), err


def test_a_huge_answer_is_refused_at_the_cap(env: Server) -> None:
    env.reply = lambda b, h: (200, {}, b'{"pad": "' + b"x" * (api_i2t.MAX_ANSWER_BYTES + 10) + b'"}')
    (err,) = caption_each(env, retries=0)
    assert isinstance(err, ModelError) and "answer larger than" in str(err)


def test_a_server_echoing_the_key_never_gets_it_printed(env: Server, tmp_path: Path) -> None:
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}. Bearer {KEY}"}}).encode()
    env.reply = lambda b, h: (401, {}, echo)
    (err,) = caption_each(env, retries=0)
    assert KEY not in str(err) and "Incorrect API key provided: ***" in str(err)
    env.reply = lambda b, h: (503, {}, echo)  # and in the retried path
    (err,) = caption_each(env, retries=1)
    assert KEY not in str(err) and "***" in str(err)
    r = cli("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--i2t", "api:m", "--api-base", env.url, "--json",
            env={api_i2t.ENV_KEY: KEY, api_i2t.ENV_RETRIES: "0"})
    assert r.returncode == 7 and KEY not in r.stdout + r.stderr and "***" in r.stderr
    [rec] = json.loads(r.stdout)
    assert KEY not in rec["error"] and "***" in rec["error"]


def test_a_redirect_never_carries_the_key_to_another_origin(env: Server, raw_server) -> None:
    other, set_handler = raw_server
    hits: list[bytes] = []
    set_handler(lambda c: hits.append(b"request") or c.sendall(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n"))
    env.reply = lambda b, h: (302, {"Location": other + "/chat/completions"}, b"")
    (err,) = caption_each(env, retries=2)
    assert isinstance(err, ModelError) and "redirects to" in str(err) and "another origin: refused" in str(err)
    assert hits == [] and len(env.requests) == 1  # never followed, not retried
    calls = []

    def same_origin(b: dict, h: dict) -> Reply:  # a 307 within the server is followed, key and body kept
        calls.append(h.get("authorization"))
        return (307, {"Location": "/v1/moved"}, b"") if len(calls) == 1 else ok("A moved house.")

    env.reply = same_origin
    assert caption_each(env) == ["A moved house."]
    assert calls == [f"Bearer {KEY}"] * 2 and env.requests[-1][0] == "/v1/moved"


def test_a_password_in_the_api_base_is_refused_without_printing_it(env: Server, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"expected a URL without credentials") as e:
        api_i2t.ApiConfig(base="http://user:hunter2@127.0.0.1:9/v1")
    assert "hunter2" not in str(e.value) and "***@127.0.0.1:9" in str(e.value)
    r = cli("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--i2t", "api:m", "--api-base",
            "http://user:hunter2@127.0.0.1:9/v1", env={})
    assert r.returncode == 2 and "hunter2" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = cli("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--api-base",
            "http://user:hunter2@127.0.0.1:9/v1", env={})  # not an api: captioner: refused, still redacted
    assert r.returncode == 2 and "hunter2" not in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "1e9", "0"])
def test_odd_api_timeouts_are_one_line_errors(env: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              value: str) -> None:
    monkeypatch.setenv(api_i2t.ENV_TIMEOUT, value)
    with pytest.raises(ConfigError, match=r"CMCODEC_API_TIMEOUT|API timeout must be in"):
        api_i2t.ApiConfig.from_env()
    if value == "inf":
        r = cli("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--i2t", "api:m", "--api-base", env.url,
                env={api_i2t.ENV_TIMEOUT: value})
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "CMCODEC_API_TIMEOUT" in r.stderr, r.stderr


def test_sigterm_while_waiting_for_a_server_ends_the_run_with_its_code(raw_server, tmp_path: Path) -> None:
    import signal

    url, set_handler = raw_server
    set_handler(lambda c: _trickle(c, total=60))
    proc = subprocess.Popen([sys.executable, "-m", "cmcodec.cli", "encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"),
                             "--i2t", "api:m", "--api-base", url], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), api_i2t.ENV_TIMEOUT: "300"})
    time.sleep(4)  # started and waiting on the trickle
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and time.monotonic() - t < 10, err
    assert "Traceback" not in err and not (tmp_path / "x.cmc").exists()
