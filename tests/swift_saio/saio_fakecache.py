"""An in-process stand-in for memcached, for the test Swift's single-process proxy.

tempauth (and the proxy's account and container info cache) need ``env['swift.cache']``;
Swift's own ``cache`` filter needs a memcached server. This filter gives a dict-backed object
with the MemcacheRing methods Swift calls; it is valid only because the proxy runs as one
process (``workers = 0``).
"""

from __future__ import annotations

import json
import threading
import time


class FakeMemcacheRing:
    def __init__(self) -> None:
        self._data: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def _expiry(seconds: float) -> float | None:
        if not seconds:
            return None
        # memcache semantics: more than 30 days means an absolute Unix time
        return seconds if seconds > 30 * 24 * 3600 else time.time() + seconds

    def _live(self, key):
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] < time.time():
            self._data.pop(key, None)
            return None
        return item

    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False):
        if serialize:
            value = json.dumps(value)
        with self._lock:
            self._data[key] = (value, self._expiry(time))

    def get(self, key, raise_on_error=False):
        with self._lock:
            item = self._live(key)
        if item is None:
            return None
        value = item[0]
        return json.loads(value) if isinstance(value, str) else value

    def incr(self, key, delta=1, time=0):
        with self._lock:
            item = self._live(key)
            new = max(0, (int(item[0]) if item else 0) + delta)
            self._data[key] = (new, self._expiry(time))
            return new

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None):
        with self._lock:
            self._data.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0):
        for key, value in mapping.items():
            self.set(key, value, serialize=serialize, time=time)

    def get_multi(self, keys, server_key):
        return [self.get(key) for key in keys]


class FakeCacheMiddleware:
    def __init__(self, app, cache) -> None:
        self.app = app
        self.cache = cache

    def __call__(self, env, start_response):
        env["swift.cache"] = self.cache
        return self.app(env, start_response)


def filter_factory(global_conf, **local_conf):
    cache = FakeMemcacheRing()
    return lambda app: FakeCacheMiddleware(app, cache)
