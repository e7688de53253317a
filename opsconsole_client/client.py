"""OverridesClient: a serving layer's local copy of the console's override rules.

`rank` and `is_blocked` run against an in-memory RuleSet, so a recommendation request
never waits on the console. One daemon thread keeps that copy fresh: it applies the
`changes` feed when Redis announces a new version (or every `poll_interval` without
Redis), re-checks the whole snapshot with `If-None-Match` every `refresh_interval`,
reports its version with `heartbeat`, and saves the last good snapshot to disk so a
restart while the console is down still serves the rules.

Failure policy (README, "Python client"):
- blocks fail closed: with no rules ever loaded, `rank`/`is_blocked` raise
  OverridesUnavailable; with old rules, their blocks keep applying;
- boosts fail open: once the rules are older than `max_boost_staleness`, `rank`
  serves without boosts;
- opt-outs fail closed: a customer the console cannot be asked about is treated as
  opted out (not personalised).

A snapshot replaces the RuleSet by swapping one reference; changes from the feed are
applied in place, where RuleSet replaces each changed item's entries whole. Readers
never lock and never see half an item; writers hold a lock so two updates cannot
interleave.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import requests

from .errors import OverridesAuthError, OverridesRequestError, OverridesUnavailable
from .rules import RankResult, RuleSet

logger = logging.getLogger("opsconsole_client")

OPTOUT_KINDS = ("personalization", "training")
SNAPSHOT_FILE_FORMAT = 1
# The contract's limit per optouts/check request.
OPTOUT_CHECK_BATCH = 10_000
# Failing requests are retried after a growing delay, capped so recovery is quick.
MAX_BACKOFF_SECONDS = 5.0
# A subscribed Redis wait is cut into slices this long so close() returns promptly.
PUSH_WAIT_SLICE_SECONDS = 0.5
REDIS_RETRY_SECONDS = 5.0
PERSIST_MIN_INTERVAL_SECONDS = 1.0
# While the console stays unreachable, repeat the warning this often, not every try.
FAILURE_LOG_INTERVAL_SECONDS = 60.0


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:128]


def _error_message(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


class _RetryLater(Exception):
    """429 from the console: wait as long as it asks before trying again."""

    def __init__(self, seconds: float):
        super().__init__(f"rate limited; retry after {seconds:.0f} s")
        self.seconds = seconds


# The console did not give a usable answer: unreachable, an HTTP error, a bad body.
_NO_ANSWER = (requests.RequestException, ValueError, KeyError, TypeError, _RetryLater)


class OverridesClient:
    """Blocks, boosts and opt-outs for one serving scope (surface and region).

    Create one per process and share it between threads. `is_blocked` and `rank`
    never wait on the console, except that `rank(customer_id=...)` asks it about a
    customer whose opt-outs are not cached (one request, at most `timeout`).
    """

    OPTOUT_CACHE_MAX_ENTRIES = 100_000

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        surface: str | None = None,
        region: str | None = None,
        snapshot_path: str | os.PathLike | None = None,
        redis_url: str | None = None,
        channel: str = "opsconsole:overrides",
        poll_interval: float = 0.5,
        refresh_interval: float = 30.0,
        heartbeat_interval: float = 15.0,
        instance: str | None = None,
        optout_cache_seconds: float = 30.0,
        timeout: float = 2.0,
        max_boost_staleness: float = 600.0,
        start: bool = True,
    ):
        self.base_url = base_url.rstrip("/")
        self.surface = surface or None
        self.region = region or None
        self.snapshot_path = Path(snapshot_path) if snapshot_path else None
        self.redis_url = redis_url or None
        self.channel = channel
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.heartbeat_interval = heartbeat_interval
        self.instance = instance or _default_instance()
        if not 0 < len(self.instance) <= 128 or any(
            character.isspace() for character in self.instance
        ):
            raise ValueError("instance: 1-128 characters without whitespace.")
        self.optout_cache_seconds = optout_cache_seconds
        self.timeout = timeout
        self.max_boost_staleness = max_boost_staleness

        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "opsconsole-client/1",
        }
        # The background thread and the callers' opt-out lookups use separate
        # sessions: a requests.Session is not documented as thread-safe.
        self._session = requests.Session()
        self._session.headers.update(headers)
        self._lookup_session = requests.Session()
        self._lookup_session.headers.update(headers)

        self._rules: RuleSet | None = None
        self._confirmed_at: float | None = None  # wall time the console last agreed
        self._optouts: dict[str, tuple[float, frozenset[str]]] = {}
        self._optouts_lock = threading.Lock()

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._next_refresh = 0.0
        self._next_heartbeat = 0.0
        self._next_poll = 0.0
        # Writers (the background thread, refresh()) take this; readers never do.
        self._update_lock = threading.RLock()
        self._dirty = False
        self._persisted_at = -math.inf
        self._redis = None
        self._pubsub = None
        self._redis_retry_at = 0.0
        self._failing = False
        self._failure_logged_at = -math.inf
        self._boosts_dropped_logged_at = -math.inf
        self._optout_failure_logged_at = -math.inf
        if start:
            self.start()

    # Lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Load the disk snapshot, try the console once, then keep fresh in background.

        A console that is down does not stop the start (the disk snapshot, if any,
        serves meanwhile); a refused key does, since retrying cannot fix it.
        """
        if self._started:
            return
        if self._closed:
            raise RuntimeError("This client is closed; create a new one.")
        self._started = True
        self._load_snapshot_file()
        try:
            self._fetch_snapshot()
        except OverridesAuthError:
            self.close()
            raise
        except _NO_ANSWER as error:
            if self._rules is None:
                logger.warning(
                    "OpsConsole at %s unreachable at start (%s) and no snapshot on "
                    "disk: rank() and is_blocked() raise OverridesUnavailable until "
                    "it answers.",
                    self.base_url,
                    error,
                )
            else:
                logger.warning(
                    "OpsConsole at %s unreachable at start (%s); serving the disk "
                    "snapshot (version %s) until it answers.",
                    self.base_url,
                    error,
                    self._rules.version,
                )
        self._thread = threading.Thread(
            target=self._run, name=f"opsconsole-overrides-{self.instance}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread and save the latest rules to disk."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.timeout + PUSH_WAIT_SLICE_SECONDS + 1.0)
        if self._dirty:
            self._persist()
        self._session.close()
        self._lookup_session.close()

    def __enter__(self) -> OverridesClient:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # State ---------------------------------------------------------------------

    @property
    def version(self) -> int | None:
        """The override version the local rules are at; None before any snapshot."""
        rules = self._rules
        return None if rules is None else rules.version

    @property
    def last_update(self) -> float | None:
        """Wall time (epoch seconds) the console last confirmed these rules current."""
        return self._confirmed_at

    @property
    def stale_seconds(self) -> float | None:
        """Seconds since the console last confirmed the rules; None without rules."""
        if self._confirmed_at is None:
            return None
        return max(0.0, time.time() - self._confirmed_at)

    def refresh(self) -> int | None:
        """Catch up with the console now, without waiting for the background thread.

        For a caller that just changed a rule and needs it applied here at once (and
        for tests). Raises what the request raised when the console cannot answer.
        """
        self._sync_changes()
        return self.version

    # Reads ---------------------------------------------------------------------

    def _current_rules(self) -> RuleSet:
        rules = self._rules
        if rules is None:
            raise OverridesUnavailable(
                f"No override rules loaded: OpsConsole at {self.base_url} has not "
                "answered and there is no snapshot on disk. Refusing to serve without "
                "the blocklist."
            )
        return rules

    def _boosts_apply(self) -> bool:
        stale = self.stale_seconds
        if stale is None or stale <= self.max_boost_staleness:
            return True
        now = time.monotonic()
        if now - self._boosts_dropped_logged_at > FAILURE_LOG_INTERVAL_SECONDS:
            self._boosts_dropped_logged_at = now
            logger.warning(
                "Override rules are %.0f s old (limit %.0f s): serving without boosts, "
                "blocks still applied.",
                stale,
                self.max_boost_staleness,
            )
        return False

    def rank(
        self, candidates: Iterable[Mapping], *, customer_id: str | None = None
    ) -> RankResult:
        """Rank locally: blocked removed, boosts applied, sorted by score.

        Candidates are `{"item_id", "score"}` mappings. The result's `items` are
        `(item_id, score)` pairs, best first (`to_response()` gives the REST shape).
        `personalized` is False when the customer opted out of personalisation, or
        cannot be checked.
        """
        rules = self._current_rules()
        result = rules.rank(
            candidates,
            surface=self.surface,
            region=self.region,
            apply_boosts=self._boosts_apply(),
        )
        personalized = True
        if customer_id is not None:
            personalized = not self.is_opted_out(customer_id)
        result.version = rules.version
        result.personalized = personalized
        return result

    def is_blocked(self, item_id: str, now: float | None = None) -> bool:
        """Whether a block applies to this item in the client's scope (epoch `now`)."""
        rules = self._current_rules()
        return (
            rules.blocking_rule(
                item_id,
                surface=self.surface,
                region=self.region,
                now=time.time() if now is None else now,
            )
            is not None
        )

    def check_optouts(self, customer_ids: Iterable[str]) -> dict[str, set[str]]:
        """{kind: the given ids opted out of it}, asking the console for uncached ids.

        The register is too large to copy, so answers are cached per id for
        `optout_cache_seconds`. Ids the console cannot be asked about are reported
        as opted out of everything (fail closed) and not cached.
        """
        found: dict[str, set[str]] = {kind: set() for kind in OPTOUT_KINDS}
        now = time.monotonic()
        missing = []
        with self._optouts_lock:
            for customer_id in dict.fromkeys(customer_ids):
                cached = self._optouts.get(customer_id)
                if cached is not None and cached[0] > now:
                    for kind in cached[1]:
                        found[kind].add(customer_id)
                else:
                    missing.append(customer_id)
        if not missing:
            return found
        try:
            answers = self._fetch_optouts(missing)
        except OverridesRequestError:
            raise
        except (OverridesAuthError, *_NO_ANSWER) as error:
            # Once per interval, not once per call: a serving layer asks on every
            # recommendation, and an outage must not flood its logs.
            if now - self._optout_failure_logged_at > FAILURE_LOG_INTERVAL_SECONDS:
                self._optout_failure_logged_at = now
                logger.warning(
                    "Opt-out check failed (%s): treating %d customer(s) as opted out "
                    "(repeated at most every %.0f s while it lasts).",
                    error,
                    len(missing),
                    FAILURE_LOG_INTERVAL_SECONDS,
                )
            for kind in OPTOUT_KINDS:
                found[kind].update(missing)
            return found
        expires = time.monotonic() + self.optout_cache_seconds
        with self._optouts_lock:
            for customer_id, kinds in answers.items():
                # Re-insert at the end: the dict stays ordered by expiry for eviction.
                self._optouts.pop(customer_id, None)
                self._optouts[customer_id] = (expires, kinds)
                for kind in kinds:
                    found[kind].add(customer_id)
            self._evict_optouts(time.monotonic())
        return found

    def is_opted_out(self, customer_id: str, kind: str = "personalization") -> bool:
        """Whether to treat this customer as opted out; True if the console is down."""
        if kind not in OPTOUT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(OPTOUT_KINDS)}.")
        return customer_id in self.check_optouts([customer_id])[kind]

    def _fetch_optouts(self, customer_ids: list[str]) -> dict[str, frozenset[str]]:
        answers: dict[str, frozenset[str]] = {}
        for start in range(0, len(customer_ids), OPTOUT_CHECK_BATCH):
            batch = customer_ids[start : start + OPTOUT_CHECK_BATCH]
            response = self._lookup_session.post(
                f"{self.base_url}/api/v1/serving/optouts/check",
                json={"customer_ids": batch},
                timeout=self.timeout,
            )
            self._raise_for_status(response)
            body = response.json()
            opted_out = {kind: set(body[kind]) for kind in OPTOUT_KINDS}
            for customer_id in batch:
                answers[customer_id] = frozenset(
                    kind for kind in OPTOUT_KINDS if customer_id in opted_out[kind]
                )
        return answers

    def _evict_optouts(self, now: float) -> None:
        """Drop expired answers, and the oldest ones beyond the size limit."""
        cache = self._optouts
        while cache:
            customer_id, (expires, _) = next(iter(cache.items()))
            if expires > now and len(cache) <= self.OPTOUT_CACHE_MAX_ENTRIES:
                break
            del cache[customer_id]

    # Talking to the console ----------------------------------------------------

    def _raise_for_status(self, response: requests.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            raise OverridesAuthError(
                f"OpsConsole refused the API key ({status}): {_error_message(response)}"
            )
        if status == 429:
            try:
                seconds = float(response.headers.get("Retry-After", ""))
            except ValueError:
                seconds = MAX_BACKOFF_SECONDS
            raise _RetryLater(seconds)
        if status == 400:
            raise OverridesRequestError(
                f"OpsConsole rejected the request: {_error_message(response)}"
            )
        response.raise_for_status()

    def _confirm(self) -> None:
        self._confirmed_at = time.time()
        if self._failing:
            self._failing = False
            logger.info("OpsConsole at %s reachable again.", self.base_url)

    def _swap(self, rules: RuleSet) -> None:
        previous = self._rules
        self._rules = rules
        self._dirty = True
        if previous is None or previous.version != rules.version:
            # Report the new version at once: the console shows when it went live.
            self._next_heartbeat = 0.0
        self._confirm()

    def _fetch_snapshot(self, *, conditional: bool = True) -> None:
        """Replace the rules with the console's snapshot, unless it says 304."""
        with self._update_lock:
            self._fetch_snapshot_locked(conditional=conditional)

    def _fetch_snapshot_locked(self, *, conditional: bool) -> None:
        rules = self._rules
        headers = {}
        if conditional and rules is not None:
            headers["If-None-Match"] = f'"{rules.version}"'
        params = {
            name: value
            for name, value in (("surface", self.surface), ("region", self.region))
            if value
        }
        response = self._session.get(
            f"{self.base_url}/api/v1/serving/snapshot",
            params=params,
            headers=headers,
            timeout=self.timeout,
        )
        if response.status_code == 304:
            self._confirm()
        else:
            self._raise_for_status(response)
            self._swap(RuleSet.from_document(response.json()))
        self._next_refresh = time.monotonic() + self.refresh_interval

    def _in_scope(self, rule: Mapping) -> bool:
        surface, region = rule.get("surface"), rule.get("region")
        return (self.surface is None or surface in (None, self.surface)) and (
            self.region is None or region in (None, self.region)
        )

    def _sync_changes(self) -> None:
        """Bring the rules up to date from the `changes` feed (a snapshot on 410)."""
        with self._update_lock:
            self._sync_changes_locked()

    def _sync_changes_locked(self) -> None:
        rules = self._rules
        if rules is None:
            self._fetch_snapshot()
            return
        since = rules.version
        changes: list[dict] = []
        while True:
            response = self._session.get(
                f"{self.base_url}/api/v1/serving/changes",
                params={"since": since},
                timeout=self.timeout,
            )
            if response.status_code == 410:
                logger.info(
                    "Changes after version %s are no longer kept; fetching a snapshot.",
                    since,
                )
                self._fetch_snapshot()
                return
            self._raise_for_status(response)
            body = response.json()
            console_version = int(body["version"])
            changes.extend(body["changes"])
            if not body.get("has_more") or not body["changes"]:
                break
            since = int(body["changes"][-1]["version"])
        if console_version < rules.version:
            # The console went back in time (restored database): trust it, not us.
            logger.warning(
                "OpsConsole is at version %s, behind ours (%s); fetching a snapshot.",
                console_version,
                rules.version,
            )
            self._fetch_snapshot(conditional=False)
            return
        if console_version == rules.version and not changes:
            self._confirm()
            return
        # In place: RuleSet replaces each changed item's entries as a whole, so a
        # `rank` running meanwhile sees every item either before or after the change,
        # and a change costs the same with 100 rules or 100,000.
        rules.apply_changes(
            (self._scoped_change(change) for change in changes), console_version
        )
        self._dirty = True
        self._next_heartbeat = 0.0  # report the new version at once
        self._confirm()

    def _scoped_change(self, change: Mapping) -> Mapping:
        """The feed covers every scope; a rule outside ours is dropped, not added.

        Turning it into a removal (rather than skipping it) also covers a rule that
        moved out of our scope.
        """
        action = change["action"]
        if action in ("block", "boost") and not self._in_scope(change["rule"]):
            return {**change, "action": "un" + action}
        return change

    def _send_heartbeat(self) -> None:
        """Say which version this instance serves; catch up if the console is ahead."""
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        version = self.version
        if version is None:
            return
        response = self._session.post(
            f"{self.base_url}/api/v1/serving/heartbeat",
            json={"instance": self.instance, "version": version},
            timeout=self.timeout,
        )
        self._raise_for_status(response)
        console_version = int(response.json()["version"])
        if console_version == version:
            self._confirm()
        elif console_version > version:
            self._sync_changes()

    # Disk snapshot -------------------------------------------------------------

    def _load_snapshot_file(self) -> None:
        path = self.snapshot_path
        if path is None or not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            if saved.get("format") != SNAPSHOT_FILE_FORMAT:
                raise ValueError(f"unknown format {saved.get('format')!r}")
            if (saved.get("surface"), saved.get("region")) != (
                self.surface,
                self.region,
            ):
                logger.warning(
                    "Ignoring the snapshot at %s: it is for surface=%s region=%s, "
                    "not surface=%s region=%s.",
                    path,
                    saved.get("surface"),
                    saved.get("region"),
                    self.surface,
                    self.region,
                )
                return
            rules = RuleSet.from_document(saved["snapshot"])
            confirmed_at = float(saved["confirmed_at"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            logger.warning("Ignoring the unreadable snapshot at %s: %s", path, error)
            return
        self._rules = rules
        self._confirmed_at = confirmed_at
        logger.info(
            "Loaded the override snapshot at %s (version %s).", path, rules.version
        )

    def _persist(self) -> None:
        """Write the rules atomically (temp file, rename): a crash leaves old or new."""
        rules, path = self._rules, self.snapshot_path
        self._dirty = False
        self._persisted_at = time.monotonic()
        if rules is None or path is None:
            return
        document = {
            "format": SNAPSHOT_FILE_FORMAT,
            "surface": self.surface,
            "region": self.region,
            "confirmed_at": self._confirmed_at,
            "snapshot": rules.to_document(),
        }
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=path.parent, prefix=f".{path.name}.", delete=False
            ) as file:
                temporary = file.name
                json.dump(document, file, separators=(",", ":"))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:
            logger.warning("Could not save the rules snapshot to %s: %s", path, error)
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)

    def _persist_due(self) -> float:
        """When the file should next be written (monotonic); infinity if up to date."""
        if not self._dirty:
            return math.inf
        return self._persisted_at + PERSIST_MIN_INTERVAL_SECONDS

    def _maybe_persist(self) -> None:
        if time.monotonic() >= self._persist_due():
            with self._update_lock:
                self._persist()

    # Background thread ---------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                    backoff = 0.0
                    continue
                except OverridesAuthError as error:
                    # Not silent and not fast: a revoked key needs a person.
                    logger.error("%s; serving the last rules meanwhile.", error)
                    delay = MAX_BACKOFF_SECONDS
                except _RetryLater as error:
                    delay = max(error.seconds, MAX_BACKOFF_SECONDS)
                    self._report_failure(error)
                except Exception as error:
                    backoff = min(
                        MAX_BACKOFF_SECONDS, max(self.poll_interval, 2 * backoff)
                    )
                    delay = backoff * random.uniform(0.8, 1.2)
                    self._report_failure(error)
                self._stop.wait(delay)
        finally:
            self._close_pubsub()

    def _report_failure(self, error: Exception) -> None:
        now = time.monotonic()
        if (
            not self._failing
            or now - self._failure_logged_at > FAILURE_LOG_INTERVAL_SECONDS
        ):
            logger.warning(
                "OpsConsole at %s unreachable (%s); serving the last rules "
                "(version %s) and retrying.",
                self.base_url,
                error,
                self.version,
            )
            self._failure_logged_at = now
        self._failing = True

    def _step(self) -> None:
        now = time.monotonic()
        if self._rules is None or now >= self._next_refresh:
            self._fetch_snapshot()
            # Rewrite the file even on 304, so its age says when it was last checked.
            self._dirty = True
        if now >= self._next_heartbeat:
            try:
                self._send_heartbeat()
            except Exception as error:
                # A failing heartbeat must not hold up rule updates: retry it later.
                self._next_heartbeat = now + min(
                    self.heartbeat_interval, MAX_BACKOFF_SECONDS
                )
                if not self._failing:
                    logger.warning("Heartbeat to %s failed: %s", self.base_url, error)
        self._maybe_persist()
        self._wait_for_change()

    def _wait_for_change(self) -> None:
        """Wait for a newer version (pushed, or polled for) and apply it.

        Waits end early when a refresh, heartbeat or file write falls due, so the
        loop in `_run` does those on time whatever the poll interval.
        """
        pubsub = self._subscribe()
        now = time.monotonic()
        next_task = min(self._next_refresh, self._next_heartbeat, self._persist_due())
        if pubsub is None:
            wait = min(self._next_poll, next_task) - now
            if wait > 0 and self._stop.wait(wait):
                return
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_interval
                self._sync_changes()
            return
        wait = max(0.0, min(PUSH_WAIT_SLICE_SECONDS, next_task - now))
        try:
            announced = self._announced_version(pubsub, wait)
        except Exception as error:
            logger.warning(
                "Redis subscription lost (%s); polling every %s s meanwhile.",
                error,
                self.poll_interval,
            )
            self._close_pubsub()
            self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            return
        version = self.version
        if announced is not None and (version is None or announced > version):
            self._sync_changes()

    def _announced_version(self, pubsub, wait: float) -> int | None:
        """The highest version among the messages waiting (the first up to `wait`)."""
        highest = None
        message = pubsub.get_message(timeout=wait)
        while message is not None:
            if message.get("type") == "message":
                try:
                    version = int(json.loads(message["data"])["version"])
                except (ValueError, KeyError, TypeError):
                    logger.debug("Ignoring a malformed announcement: %r", message)
                else:
                    highest = version if highest is None else max(highest, version)
            message = pubsub.get_message(timeout=0)
        return highest

    def _subscribe(self):
        """The Redis subscription, (re)connecting when due; None means poll."""
        if self._pubsub is not None:
            return self._pubsub
        if self.redis_url is None or time.monotonic() < self._redis_retry_at:
            return None
        try:
            import redis
        except ImportError:
            logger.warning("redis is not installed; polling for changes instead.")
            self._redis_retry_at = math.inf
            return None
        redis_client = None
        try:
            redis_client = redis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=self.timeout,
                health_check_interval=10,
            )
            pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.channel)
        except Exception as error:
            if redis_client is not None:
                redis_client.close()
            logger.warning(
                "Cannot subscribe to %s on Redis (%s); polling every %s s meanwhile.",
                self.channel,
                error,
                self.poll_interval,
            )
            self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            return None
        # Keep the client too: when it is garbage-collected it closes its connection
        # pool, the subscription's connection with it, and messages are lost.
        self._redis, self._pubsub = redis_client, pubsub
        # Catch up on whatever was announced before we listened.
        self._sync_changes()
        return pubsub

    def _close_pubsub(self) -> None:
        pubsub, redis_client = self._pubsub, self._redis
        self._pubsub = self._redis = None
        for resource in (pubsub, redis_client):
            if resource is not None:
                try:
                    resource.close()
                except Exception:
                    logger.debug("Error closing the Redis subscription", exc_info=True)
