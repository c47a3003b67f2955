"""Captions from a server that speaks OpenAI's chat-completions protocol (GPT-4o, or a local vLLM, Ollama or
LM Studio server), through the standard library's urllib: no client package, no torch.

Chosen only by name (``--i2t api:MODEL``): the image leaves this machine for the server at the API base, so
nothing ever falls back to it, and offline runs (``--offline``, ``$CMCODEC_OFFLINE``) refuse it.

Protocol (POST ``{base}/chat/completions``, JSON)::

    request:  {"model": MODEL, "temperature": 0, "max_tokens": N,
               "messages": [{"role": "user", "content": [
                   {"type": "text", "text": PROMPT},
                   {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}]}]}
              header "Authorization: Bearer KEY" when a key is set
    answer:   {"choices": [{"message": {"content": "A caption ..."}, "finish_reason": "stop"}]}
              (content may also be a list of {"type": "text", "text": ...} parts)

The key comes from ``$CMCODEC_API_KEY`` (``$OPENAI_API_KEY`` only for OpenAI's own endpoint, so that key is never
sent to another server); it is never taken from the command line and never written to a message or log.

A hostile or broken server is held: each attempt has a total deadline (connect, send and the whole answer,
however slowly it trickles), the answer is capped (MAX_ANSWER_BYTES) and must have the documented shape with
text that is Unicode (deep nesting, non-string parts and lone surrogates are one-line errors), a redirect is
followed only to the same origin (scheme, host and port; never carrying the key elsewhere), and every message
has the key and any password of the base URL redacted (a server that echoes the key does not get it printed).
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin, urlparse

from PIL import Image

from ..core.errors import CmcodecError, ConfigError, ModelError

PREFIX = "api:"  # --i2t api:MODEL
ENV_KEY = "CMCODEC_API_KEY"
ENV_OPENAI_KEY = "OPENAI_API_KEY"  # read only when the base is OpenAI's own endpoint
ENV_BASE = "CMCODEC_API_BASE"
ENV_TIMEOUT = "CMCODEC_API_TIMEOUT"
ENV_RETRIES = "CMCODEC_API_RETRIES"
ENV_OFFLINE = "CMCODEC_OFFLINE"
OPENAI_BASE = "https://api.openai.com/v1"

# Limits, each with its reason:
TIMEOUT_S = 60.0  # one request; GPT-4o answers a one-image caption in a few seconds, a busy local server later
RETRIES = 4  # further attempts after a timeout, a dropped connection, 429 or 5xx; 4xx other than 429 are final
BACKOFF_S = 1.0  # first wait, doubled per attempt (1, 2, 4, 8 s), unless the server sends Retry-After
MAX_WAIT_S = 60.0  # a Retry-After longer than this fails the image now instead of stalling the run
MAX_SIDE, MAX_SHORT_SIDE = 2048, 768  # OpenAI scales a high-detail image to fit 2048 px, then 768 px short side:
# sending more pixels costs upload time and nothing else
JPEG_QUALITY = 95  # 4:4:4, so colours the caption names are not blurred by chroma subsampling
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # an answer larger than this is not a caption
MAX_PARALLEL = 8  # requests in flight per batch; a 429 slows them down
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_TIMEOUT_S = 3600.0  # a deadline longer than an hour per image is a typo, not a setting
MAX_RETRIES = 100
MAX_REDIRECTS = 5  # same-origin redirects followed per attempt
MAX_JSON_DEPTH = 32  # an answer nested deeper than this is not a chat completion (and would exhaust the stack)
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class ApiConfig:
    """Where and how captions are requested. ``from_env`` fills it from the environment (the CLI's --api-base
    sets ``$CMCODEC_API_BASE``)."""

    base: str = OPENAI_BASE
    timeout: float = TIMEOUT_S
    retries: int = RETRIES
    backoff: float = BACKOFF_S
    max_wait: float = MAX_WAIT_S

    def __post_init__(self) -> None:
        u = urlparse(self.base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"--api-base {redact_url(self.base)!r}: expected an http(s) URL such as {OPENAI_BASE} "
                              "or http://127.0.0.1:8000/v1")
        if u.username is not None or u.password is not None:
            raise ConfigError(f"--api-base {redact_url(self.base)!r}: expected a URL without credentials; the key "
                              f"goes in ${ENV_KEY} (a password in a URL ends up in logs and listings)")
        try:
            u.port  # noqa: B018  (a malformed port raises here, not at the first request)
        except ValueError:
            raise ConfigError(f"--api-base {redact_url(self.base)!r}: expected a port number") from None
        if not (0 < self.timeout <= MAX_TIMEOUT_S) or not 0 <= self.retries <= MAX_RETRIES \
                or not (0 <= self.backoff <= MAX_TIMEOUT_S) or not (0 <= self.max_wait <= MAX_TIMEOUT_S):
            raise ConfigError(f"API timeout must be in (0, {MAX_TIMEOUT_S:g}] s, retries in 0..{MAX_RETRIES}, backoff "
                              f"and max wait in [0, {MAX_TIMEOUT_S:g}] s; found {self.timeout}, {self.retries}, "
                              f"{self.backoff}, {self.max_wait}")

    @classmethod
    def from_env(cls, base: str | None = None) -> ApiConfig:
        """Base from the argument, else $CMCODEC_API_BASE, else OpenAI; timeout and retries from
        $CMCODEC_API_TIMEOUT / $CMCODEC_API_RETRIES."""

        def num(name: str, conv: Callable[[str], float], default: float) -> float:
            v = os.environ.get(name)
            if v is None or not v.strip():
                return default
            try:
                out = conv(v)
            except ValueError:
                raise ConfigError(f"${name}: expected a number, found {v!r}") from None
            if not math.isfinite(out):
                raise ConfigError(f"${name}: expected a finite number, found {v!r}")
            return out

        return cls(base=(base or os.environ.get(ENV_BASE) or OPENAI_BASE).rstrip("/"),
                   timeout=num(ENV_TIMEOUT, float, TIMEOUT_S), retries=int(num(ENV_RETRIES, int, RETRIES)))

    @property
    def is_openai(self) -> bool:
        return urlparse(self.base).hostname == "api.openai.com"


def is_api(name: str | None) -> bool:
    """True for an ``api:MODEL`` captioner name."""
    return bool(name) and name.startswith(PREFIX)  # type: ignore[union-attr]


def model_name(name: str) -> str:
    """MODEL of ``api:MODEL``, refused when empty."""
    m = name[len(PREFIX):].strip()
    if not m:
        raise ConfigError(f"--i2t {name!r}: expected api:MODEL, for example api:gpt-4o")
    return m


def api_key(cfg: ApiConfig) -> str | None:
    """The key for this base from the environment, or None (local servers usually need none)."""
    key = os.environ.get(ENV_KEY) or (os.environ.get(ENV_OPENAI_KEY) if cfg.is_openai else None)
    if not key and cfg.is_openai:
        raise ModelError(f"the OpenAI API needs a key: set ${ENV_KEY} (or ${ENV_OPENAI_KEY}); a key is never "
                         "taken from the command line")
    return key or None


def check_allowed() -> None:
    """Refuse in an offline run: the image would leave this machine."""
    if os.environ.get(ENV_OFFLINE, "0").lower() in ("1", "true", "yes", "on"):
        raise ModelError("the api: captioner sends each image to a server, which an offline run (--offline, "
                         f"${ENV_OFFLINE}=1) forbids: drop --offline or choose a local captioner")


def image_data_url(img: Image.Image) -> str:
    """The image as a base64 JPEG data URL, scaled down to what the server would look at (MAX_SIDE /
    MAX_SHORT_SIDE; never up)."""
    im = img.convert("RGB")
    w, h = im.size
    s = min(1.0, MAX_SIDE / max(w, h), MAX_SHORT_SIDE / min(w, h))
    if s < 1.0:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def request_body(model: str, prompt: str, img: Image.Image, max_tokens: int) -> dict:
    """The chat-completions request for one image (see the module docstring)."""
    return {"model": model, "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": image_data_url(img)}}]}]}


class _Retry(Exception):
    """A failure worth another attempt: why, and how long the server asked us to wait (None: back off)."""

    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date, RFC 9110 §10.2.3), None if absent/bad."""
    if not value:
        return None
    v = value.strip()
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(raw: bytes) -> str:
    """The error message of an OpenAI-style error body ({"error": {"message": ...}}), else its first bytes."""
    try:
        err = json.loads(raw.decode("utf-8")).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg.strip():
            return " ".join(msg.split())[:200]
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    return " ".join(raw[:200].decode("utf-8", "replace").split()) or "(empty body)"


def redact_url(url: str) -> str:
    """The URL with any password (and user) of its authority replaced by ***: what messages may show."""
    try:
        u = urlparse(url)
    except ValueError:
        return "(a malformed URL)"
    if u.username is None and u.password is None:
        return url
    host = u.netloc.rpartition("@")[2]
    return u._replace(netloc=f"***@{host}").geturl()


def redact(text: str, key: str | None) -> str:
    """A message with the key (and anything that looks like it, e.g. in a URL) replaced by ***."""
    if key:
        text = text.replace(key, "***")
    return text


def _depth(obj: object, limit: int) -> bool:
    """True when obj nests no deeper than limit (iteratively: a hostile answer must not exhaust the stack)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return True


def _text(answer: object) -> str:
    """choices[0].message.content of an answer (a string or text parts), or ModelError naming what was found."""
    try:
        choice = answer["choices"][0]  # type: ignore[index]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        found = sorted(answer)[:8] if isinstance(answer, dict) else type(answer).__name__
        raise ModelError(f"expected a chat-completions answer with choices[0].message.content, found {found}") from None
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        bad = [type(p.get("text")).__name__ for p in parts if not isinstance(p.get("text"), str)]
        if bad:
            raise ModelError(f"expected text parts with a string 'text', found {bad[0]}")
        content = " ".join(p["text"] for p in parts)
    if not isinstance(content, str):
        raise ModelError(f"expected text in choices[0].message.content, found {type(content).__name__}")
    if not content.strip():
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        raise ModelError(f"the server returned no text (finish_reason {str(reason)[:40]!r})")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as e:  # a JSON \ud800 escape: not a Unicode scalar value, so not caption text
        raise ModelError(f"expected Unicode text, found U+{ord(content[e.start]):04X} at character {e.start}") \
            from None
    return content


class _Deadline:
    """The total time of one attempt: a timer shuts the connection's socket down when it is spent, which ends a
    blocked connect, send or read (a server trickling its answer a byte at a time included)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.conn: http.client.HTTPConnection | None = None
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.conn.sock if self.conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0 or self.fired:
            raise TimeoutError
        return left

    def cancel(self) -> None:
        self._timer.cancel()


def _origin(url: str) -> tuple[str, str, int]:
    u = urlparse(url)
    return u.scheme, (u.hostname or "").lower(), u.port or (443 if u.scheme == "https" else 80)


def _post(url: str, body: bytes, key: str | None, timeout: float) -> object:
    """One attempt: a POST (and its same-origin redirects) within a total deadline of ``timeout`` seconds; the
    parsed JSON answer, _Retry for a transient failure, ModelError for a final one."""
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "cmcodec"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    deadline = _Deadline(timeout)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            status, got, location, retry_after = _exchange(url, body, headers, deadline)
            if status not in REDIRECTS:
                break
            target = urljoin(url, location or "")
            if not location or _origin(target) != _origin(url):
                raise ModelError(f"HTTP {status}: the server redirects to {redact_url(target)!r}, another origin: "
                                 "refused (the request and its key go to --api-base only)")
            url = target
        else:
            raise ModelError(f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise _Retry(f"no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as e:
        if deadline.fired:
            raise _Retry(f"no answer within {timeout:g} s") from None
        raise _Retry(f"connection failed ({type(e).__name__}: {e})") from None
    finally:
        deadline.cancel()
    if status >= 400:
        msg = _server_message(got)
        if status in RETRY_STATUS:
            raise _Retry(f"HTTP {status}: {msg}", _retry_after(retry_after))
        hint = {401: " (check $" + ENV_KEY + ")", 403: " (check $" + ENV_KEY + ")",
                404: " (check --api-base and the model name)"}.get(status, "")
        raise ModelError(f"HTTP {status}{hint}: {msg}")
    if not 200 <= status < 300:
        raise ModelError(f"HTTP {status}: expected 200 with a JSON answer")
    try:
        answer = json.loads(got.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelError(f"expected a JSON answer, found {' '.join(got[:80].decode('utf-8', 'replace').split())!r}") \
            from None
    except RecursionError:
        raise ModelError(f"expected a chat-completions answer, found JSON nested deeper than {MAX_JSON_DEPTH}") \
            from None
    if not _depth(answer, MAX_JSON_DEPTH):
        raise ModelError(f"expected a chat-completions answer, found JSON nested deeper than {MAX_JSON_DEPTH}")
    return answer


def _exchange(url: str, body: bytes, headers: dict[str, str], deadline: _Deadline) -> \
        tuple[int, bytes, str | None, str | None]:
    """(status, body up to MAX_ANSWER_BYTES, Location, Retry-After) of one POST to url, within the deadline."""
    u = urlparse(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname or "", u.port, timeout=deadline.left())
    deadline.conn = conn
    try:
        try:
            conn.connect()
        except OSError as e:
            if deadline.fired or isinstance(e, TimeoutError):
                raise TimeoutError from None
            raise _Retry(f"cannot connect ({getattr(e, 'strerror', None) or e})") from None
        if deadline.fired:  # the deadline passed while connecting: the socket was not there to shut down
            raise TimeoutError
        conn.request("POST", (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        limit = MAX_ANSWER_BYTES if resp.status < 400 else 64 * 1024
        chunks, n = [], 0
        while n <= limit:
            deadline.left()
            chunk = resp.read1(64 * 1024) if hasattr(resp, "read1") else resp.read(64 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
        if deadline.fired:  # the shut-down socket ended the read early: an incomplete answer
            raise TimeoutError
        if n > limit and resp.status < 400:
            raise ModelError(f"answer larger than {MAX_ANSWER_BYTES} bytes: not a caption")
        return resp.status, b"".join(chunks)[:limit], resp.getheader("Location"), resp.getheader("Retry-After")
    finally:
        conn.close()


def caption_one(img: Image.Image, model: str, prompt: str, max_tokens: int, cfg: ApiConfig,
                key: str | None, sleep: Callable[[float], None] = time.sleep) -> str:
    """One image's raw caption, retried with backoff (or the server's Retry-After); a one-line ModelError
    naming the server and the cause when it cannot be had, with the key redacted."""
    url = cfg.base + "/chat/completions"
    body = json.dumps(request_body(model, prompt, img, max_tokens)).encode("utf-8")
    where = f"captioner api:{model} at {redact_url(cfg.base)}"
    delay = cfg.backoff
    for attempt in range(cfg.retries + 1):
        try:
            return _text(_post(url, body, key, cfg.timeout))
        except ModelError as e:
            raise ModelError(redact(f"{where}: {e}", key)) from None
        except _Retry as e:
            if attempt == cfg.retries:
                raise ModelError(redact(f"{where}: {e} (after {cfg.retries + 1} attempts)", key)) from None
            wait = delay if e.wait is None else e.wait
            if wait > cfg.max_wait:
                raise ModelError(redact(f"{where}: {e}; the server asks to wait {wait:.0f} s, more than "
                                        f"{cfg.max_wait:.0f} s", key)) from None
            sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises


def caption_each(images: list[Image.Image], *, model: str, prompt: str, max_tokens: int,
                 cfg: ApiConfig | None = None) -> list[str | CmcodecError]:
    """Raw captions of several images, requested in parallel (MAX_PARALLEL); each entry is that image's
    caption or its CmcodecError, so one failed image does not fail the others."""
    check_allowed()
    cfg = cfg or ApiConfig.from_env()
    name = model_name(model) if is_api(model) else model
    key = api_key(cfg)

    def one(img: Image.Image) -> str | CmcodecError:
        try:
            return caption_one(img, name, prompt, max_tokens, cfg, key)
        except CmcodecError as e:
            return e

    if len(images) == 1:
        return [one(images[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(images))) as pool:
        return list(pool.map(one, images))
