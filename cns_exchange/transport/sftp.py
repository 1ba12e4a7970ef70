"""The ``sftp://`` drop box, over paramiko.

Host keys are checked against a pinned fingerprint or a known_hosts file *before* any
authentication is attempted, and never added automatically. Secrets come from the
environment, the system keyring or a prompt. TCP_NODELAY is set on the socket: without it a
share of small SFTP requests stall on Nagle + delayed ACK (about 40 ms each).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import inspect
import logging
import os
import secrets
import socket
import stat as statmod
from pathlib import Path
from typing import IO, Callable

import paramiko

from cns_exchange.errors import ConfigError, TransportFatalError, TransportRetryableError
from cns_exchange.i18n import _, join, ngettext
from cns_exchange.transport import TEMP_PREFIX, TEMP_SUFFIX, RemoteEntry

log = logging.getLogger("cnsx.sftp")

#: Bytes per SFTP read or write request where the server says it takes that many (OpenSSH's
#: limits@openssh.com extension; its server takes up to 255 KiB). paramiko's 32 KiB caps a
#: download at ~70 % of OpenSSH's sftp here; 128 KiB is faster than sftp. A server that does
#: not say keeps 32 KiB: some cap reads at 63 or 64 KiB, and short answers would stop
#: paramiko's read-ahead, or reject larger writes.
_REQUEST = 128 * 1024
_DEFAULT_REQUEST = 32 * 1024
#: Files opened at once by get_small when the server does not say how many it allows.
_HANDLES = 32
_CHUNK = 32768


def _quiet_paramiko() -> None:
    """Keep paramiko's own log lines and its background threads' tracebacks off stderr: a
    dead server is reported once, by cnsx, with its remedy (--debug shows everything)."""
    import threading

    if os.environ.get("CNSX_DEBUG") == "1":
        return
    logger = logging.getLogger("paramiko")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    previous = threading.excepthook
    if getattr(previous, "_cnsx", False):
        return

    def hook(args):
        if args.exc_type in (EOFError, OSError, ConnectionError, paramiko.SSHException) or \
                issubclass(args.exc_type, (EOFError, OSError, paramiko.SSHException)):
            return  # a paramiko worker thread losing its connection: the caller sees the error
        previous(args)

    hook._cnsx = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def fingerprint(key: paramiko.PKey) -> str:
    """Return a key's fingerprint as OpenSSH prints it: ``SHA256:`` + unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _connect_socket(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:   # the resolver could not answer now: the network, not the name
            raise TransportRetryableError(_("{host}: cannot resolve for now ({reason})").format(
                host=host, reason=exc.strerror),
                _("the network or its name server is down: cnsx will try again on its next run")) from None
        raise TransportFatalError(_("{host}: cannot resolve ({reason})").format(host=host, reason=exc.strerror),
                                  _("check the host in remote")) from None
    except (ConnectionError, socket.timeout, OSError) as exc:
        raise TransportRetryableError(_("{host}:{port}: cannot connect ({reason})").format(
            host=host, port=port, reason=getattr(exc, "strerror", None) or exc),
            _("the server or the network is down: cnsx will try again on its next run")) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def server_keys(host: str, port: int, timeout: float = 15) -> list[paramiko.PKey]:
    """Return the host keys a server offers (one handshake per key type), authenticating nothing.
    Raises TransportRetryableError or TransportFatalError for the network's failures, as
    :meth:`SftpTransport.connect` does."""
    _quiet_paramiko()
    keys = []
    for key_type in ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"):
        sock = _connect_socket(host, port, timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.get_security_options().key_types = [key_type]
            transport.start_client(timeout=timeout)
            keys.append(transport.get_remote_server_key())
        except paramiko.SSHException:
            pass  # the server has no key of this type
        except (EOFError, OSError) as exc:  # the connection lost in the handshake
            raise TransportRetryableError(_("{remote}: SSH handshake failed ({reason})").format(
                remote=f"{host}:{port}", reason=exc or type(exc).__name__),
                _("the server may be busy or restarting: run again later")) from None
        finally:
            transport.close()
    return keys


def _known_hosts_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def check_host_key(key: paramiko.PKey, host: str, port: int, settings) -> None:
    """Accept the server's key only if pinned or in known_hosts; TransportFatalError otherwise."""
    shown = f"{key.get_name()} {fingerprint(key)}"
    pinned = settings.host_key
    if pinned:
        if fingerprint(key) == pinned.strip():
            return
        raise TransportFatalError(
            _("{host}:{port}: host key {key} does not match the pinned host_key {pinned}").format(
                host=host, port=port, key=shown, pinned=pinned),
            _("if the CNS announced a new key, check it with them and pin the new fingerprint; otherwise do not connect"))
    path = Path(settings.known_hosts) if settings.known_hosts else Path.home() / ".ssh" / "known_hosts"
    hostkeys = paramiko.HostKeys()
    if path.is_file():
        try:
            hostkeys.load(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise ConfigError(_("{file}: cannot read known_hosts ({error})").format(file=path, error=exc),
                              _("fix or replace the file")) from None
    entry = _known_hosts_entry(host, port)
    known = hostkeys.lookup(entry)
    if known is None:
        raise TransportFatalError(
            _("{entry}: unknown host key {key} (not in {file})").format(entry=entry, key=shown, file=path),
            _('check the fingerprint with the CNS, then pin it: host_key = "{fingerprint}" (cnsx hostkey {host}:{port})')
            .format(fingerprint=fingerprint(key), host=host, port=port))
    stored = known.get(key.get_name())
    if stored is None or stored.asbytes() != key.asbytes():
        raise TransportFatalError(
            _("{entry}: host key {key} differs from the one in {file}: the server changed or someone is in between")
            .format(entry=entry, key=shown, file=path),
            _("do not connect; check the new key with the CNS before replacing the entry"))


class SftpTransport:
    """A connected SFTP session to the drop box."""

    def __init__(self, transport: paramiko.Transport, sftp: paramiko.SFTPClient, description: str,
                 limits: tuple[int, int, int] | None = None) -> None:
        self.transport = transport
        self.sftp = sftp
        self.description = description
        #: Why paramiko's private request API cannot be used (see _PrivateRequests), or None:
        #: then get_small reads nothing (get() fetches each file) and requests stay 32 KiB.
        self.private_api_problem = _PrivateRequests.problem(sftp)
        if self.private_api_problem:
            log.debug("%s: %s; small files are read one at a time and requests are 32 KiB",
                      description, self.private_api_problem)
        if limits is None:  # (the extended request needs the private API: without it, nothing stated)
            limits = (0, 0, 0) if self.private_api_problem else _server_limits(sftp)
        self.limits = limits
        max_read, max_write, max_handles = self.limits
        self.read_size = min(_REQUEST, max_read) if max_read else _DEFAULT_REQUEST
        self.write_size = min(_REQUEST, max_write) if max_write else _DEFAULT_REQUEST
        self.handles = max(1, min(_HANDLES, max_handles - 8)) if max_handles else _HANDLES

    @classmethod
    def connect(cls, remote, settings, prompt: Callable[[str], str] | None = None) -> "SftpTransport":
        _quiet_paramiko()
        timeout = float(settings.timeout)
        key_types = None
        if settings.host_key:
            # A server offers several host keys and negotiation picks one: ask for the type
            # of the pinned key, so that pinning any of the fingerprints `cnsx hostkey` prints works.
            for key in server_keys(remote.host, remote.port, timeout):
                if fingerprint(key) == settings.host_key.strip():
                    key_types = [key.get_name()] if key.get_name() != "ssh-rsa" else ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        sock = _connect_socket(remote.host, remote.port, timeout)
        transport = paramiko.Transport(sock)
        if key_types:
            options = transport.get_security_options()
            options.key_types = [t for t in key_types if t in options.key_types] or options.key_types
        try:
            try:
                transport.start_client(timeout=timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise TransportRetryableError(_("{remote}: SSH handshake failed ({reason})").format(
                    remote=remote, reason=exc or type(exc).__name__),
                    _("the server may be busy or restarting: run again later")) from None
            check_host_key(transport.get_remote_server_key(), remote.host, remote.port, settings)
            _authenticate(transport, remote, settings, prompt)
            try:
                sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise _error(exc, str(remote)) from None
            if sftp is None:
                raise TransportRetryableError(_("{remote}: the server opened no SFTP session").format(remote=remote),
                                              _("run again later"))
            sftp.get_channel().settimeout(timeout)
        except BaseException:
            transport.close()
            raise
        return cls(transport, sftp, str(remote))

    # -- operations ------------------------------------------------------------------------

    def list(self, folder: str) -> list[RemoteEntry]:
        try:
            attrs = self.sftp.listdir_attr(folder)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _error(exc, folder) from None
        return sorted((RemoteEntry(a.filename, a.st_size or 0, int(a.st_mtime or 0), a.st_mode or 0) for a in attrs),
                      key=lambda e: e.name)

    def stat(self, folder: str, name: str) -> RemoteEntry | None:
        try:
            a = self.sftp.lstat(f"{folder}/{name}")
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _error(exc, name) from None
        return RemoteEntry(name, a.st_size or 0, int(a.st_mtime or 0), a.st_mode or 0)

    def put(self, source: IO[bytes], size: int, folder: str, name: str,
            progress: Callable[[int], None] | None = None) -> None:
        temp = f"{folder}/{TEMP_PREFIX}{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            with self.sftp.open(temp, "wbx") as out:  # O_EXCL: never write into a file that exists
                out.chmod(0o600)  # health data: private on the server too
                out.set_pipelined(True)
                out.MAX_REQUEST_SIZE = self.write_size
                for chunk in iter(lambda: source.read(_CHUNK * 8), b""):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            written = self.sftp.stat(temp).st_size
            if written != size:
                raise TransportRetryableError(_("{name}: the server holds {written} bytes of {size}").format(
                    name=name, written=written, size=size), _("run the upload again"))
            try:
                # SFTP v3 rename fails when the target exists (OpenSSH links then unlinks):
                # exactly the no-clobber publish we want; posix-rename would replace.
                self.sftp.rename(temp, f"{folder}/{name}")
            except OSError:
                if self.stat(folder, name) is not None:
                    raise FileExistsError(name) from None
                raise
        except FileExistsError:
            self._discard(temp)
            raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._discard(temp)
            raise _error(exc, name) from None

    def _discard(self, temp: str) -> None:
        try:
            self.sftp.remove(temp)
        except (OSError, paramiko.SSHException, EOFError):
            pass  # the next run removes stale temporary files

    def get(self, folder: str, name: str, sink: IO[bytes], progress: Callable[[int], None] | None = None,
            size: int | None = None) -> int:
        total = 0
        try:
            with self.sftp.open(f"{folder}/{name}", "rb") as source:
                if size is None:
                    size = source.stat().st_size or 0  # one more round trip: pass size when known
                source.MAX_REQUEST_SIZE = self.read_size
                source.prefetch(size)  # keep many read requests in flight
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    sink.write(chunk)
                    total += len(chunk)
                    if progress:
                        progress(len(chunk))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # a local error: the caller reports it
            raise _error(exc, name) from None
        return total

    def get_small(self, folder: str, entries: list[RemoteEntry]) -> list[bytes | None]:
        """Read small files whole, with every open, then every read, then every close of a
        group in flight at once: three round trips for the group instead of three per file,
        which is what bounds small files. A file is taken only if it is exactly its listed
        size: a read of that many bytes returns them all and a read just past them finds the
        end of the file. Any other file (gone, refused, grown, larger than one request) comes
        back as None: fetch it with get(), which reports why. All come back None where
        paramiko's private request API is not as expected (``private_api_problem``).

        Raises TransportRetryableError or TransportFatalError as get() does."""
        results: list[bytes | None] = [None] * len(entries)
        wanted = [i for i, e in enumerate(entries) if e.size <= self.read_size]
        if not wanted or self.private_api_problem:
            return results
        try:
            for start in range(0, len(wanted), self.handles):
                group = wanted[start:start + self.handles]
                for i, data in zip(group, self._read_group(folder, [entries[i] for i in group])):
                    results[i] = data
        except (OSError, paramiko.SSHException, paramiko.SFTPError, EOFError) as exc:
            raise _error(exc, ngettext("{folder} ({n} file)", "{folder} ({n} files)", len(entries))
                         .format(folder=folder, n=len(entries))) from None
        return results

    def _read_group(self, folder: str, entries: list[RemoteEntry]) -> list[bytes | None]:
        from paramiko.sftp import CMD_CLOSE, CMD_DATA, CMD_HANDLE, CMD_OPEN, CMD_READ, CMD_STATUS, SFTP_EOF, SFTP_FLAG_READ
        from paramiko.sftp import int64

        requests = _PrivateRequests(self.sftp)
        send, gather = requests.send, requests.gather
        opened = gather([send(CMD_OPEN, f"{folder}/{e.name}", SFTP_FLAG_READ, paramiko.SFTPAttributes())
                         for e in entries])
        handles = [msg.get_binary() if t == CMD_HANDLE else None for t, msg in opened]
        asked = [(i, send(CMD_READ, h, int64(0), entries[i].size) if entries[i].size else None,
                  send(CMD_READ, h, int64(entries[i].size), 1))
                 for i, h in enumerate(handles) if h is not None]
        answers = iter(gather([n for _i, whole, end in asked for n in (whole, end) if n is not None]))
        results: list[bytes | None] = [None] * len(entries)
        for i, whole, _end in asked:
            data = b""
            if whole is not None:
                t, msg = next(answers)
                data = msg.get_string() if t == CMD_DATA else None
            t, msg = next(answers)
            at_end = t == CMD_STATUS and msg.get_int() == SFTP_EOF
            if data is not None and len(data) == entries[i].size and at_end:
                results[i] = data
        gather([send(CMD_CLOSE, h) for h in handles if h is not None])
        return results

    def remove(self, folder: str, name: str) -> None:
        try:
            self.sftp.remove(f"{folder}/{name}")
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _error(exc, name) from None

    def move(self, folder: str, name: str, to_folder: str) -> None:
        try:
            self.sftp.rename(f"{folder}/{name}", f"{to_folder}/{name}")
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _error(exc, name) from None

    def remove_stale_temps(self, folder: str) -> int:
        count = 0
        for entry in self.list(folder):
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX) and statmod.S_ISREG(entry.mode):
                self._discard(f"{folder}/{entry.name}")
                count += 1
        return count

    def clone(self) -> "SftpTransport":
        try:
            sftp = paramiko.SFTPClient.from_transport(self.transport)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _error(exc, _("a second SFTP session")) from None
        if sftp is None:
            raise TransportRetryableError(_("the server opened no second SFTP session"), _("run again later"))
        sftp.get_channel().settimeout(self.sftp.get_channel().gettimeout())
        return SftpTransport(self.transport, sftp, self.description, self.limits)

    def close_clone(self) -> None:
        try:
            self.sftp.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def close(self) -> None:
        # Closing a session whose server died must not raise (and hide the real error).
        try:
            self.sftp.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self.transport.close()


def _server_limits(sftp: paramiko.SFTPClient) -> tuple[int, int, int]:
    """Return the server's (max read length, max write length, max open files) as its
    limits@openssh.com extension states them; 0 for what it does not say. Sent through
    paramiko's private request API (the only way to send an extended request): call it only
    where that API is as expected (``_PrivateRequests.problem``)."""
    from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

    try:
        t, msg = _PrivateRequests.request(sftp, CMD_EXTENDED, "limits@openssh.com")
        if t != CMD_EXTENDED_REPLY:
            return 0, 0, 0
        msg.get_int64()  # max packet length
        return msg.get_int64(), msg.get_int64(), msg.get_int64()
    except (OSError, EOFError, paramiko.SFTPError, paramiko.SSHException):
        return 0, 0, 0  # not supported (a STATUS answer); a lost connection shows in the next request


class _PrivateRequests:
    """The one place that calls paramiko's private SFTP request API.

    paramiko has no public way to have several opens (or closes) in flight, nor to send an
    extended request such as limits@openssh.com. With its public calls (open, read, read to the
    end, close: four round trips per file rather than three per group of up to 32), a fetch of
    2,000 small files took 1.3 to 1.5 times as long even on 127.0.0.1, and 32 KiB requests
    made a large download 1.45 times as long (benchmarks/bench_transport.py).

    So: ``SFTPClient._async_request(obj, type, *args)`` sends a request and returns its number;
    ``SFTPClient._read_response()`` reads one answer and hands it to
    ``obj._async_response(type, msg, number)``; ``SFTPClient._request(type, *args)`` sends one
    and waits for its answer. Any paramiko release may change them: pyproject.toml bounds
    paramiko to the minor versions tests/test_sftp_private_api.py passed on, and ``problem()``
    checks names and signatures at run time, so that a paramiko installed past the bound falls
    back to the public calls (slower, correct) and says so in the debug log. A change it cannot
    see (the callback renamed) raises from paramiko: the fetch fails, it does not guess.
    """

    #: The signatures (annotations aside) of the calls, as paramiko 3.4 to 5.1 have them: a
    #: change in what they take or in their order is a change to read before trusting them.
    SIGNATURES = {"_async_request": "(fileobj, t, *args)", "_read_response": "(waitfor=None)", "_request": "(t, *args)"}
    #: The names it takes from paramiko.sftp.
    CONSTANTS = ("CMD_OPEN", "CMD_READ", "CMD_CLOSE", "CMD_HANDLE", "CMD_DATA", "CMD_STATUS", "CMD_EXTENDED",
                 "CMD_EXTENDED_REPLY", "SFTP_EOF", "SFTP_FLAG_READ", "int64")

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp
        self.got: dict[int, tuple[int, paramiko.Message]] = {}

    @classmethod
    def problem(cls, sftp: paramiko.SFTPClient) -> str | None:
        """Return why the private calls cannot be used on ``sftp`` (a name gone, a signature
        changed), or None when they can."""
        import paramiko.sftp as protocol

        version = getattr(paramiko, "__version__", "?")
        for name, expected in cls.SIGNATURES.items():
            method = getattr(sftp, name, None)
            if not callable(method):
                return f"paramiko {version} has no SFTPClient.{name}"
            try:
                signature = inspect.signature(method)
            except (TypeError, ValueError):
                return f"paramiko {version}: SFTPClient.{name} has no signature to check"
            found = str(signature.replace(
                parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                return_annotation=signature.empty))
            if found != expected:
                return f"paramiko {version}: SFTPClient.{name}{found} is not {name}{expected}"
        missing = [name for name in cls.CONSTANTS if not hasattr(protocol, name)]
        if missing:
            return f"paramiko {version}: paramiko.sftp has no {', '.join(missing)}"
        return None

    def send(self, t: int, *args) -> int:
        """Send a request without waiting; return its number (its answer goes to ``got``)."""
        return self.sftp._async_request(self, t, *args)

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        # paramiko's _read_response calls this with each answer to a request sent by send()
        self.got[num] = (t, msg)

    def gather(self, numbers: list[int]) -> list[tuple[int, paramiko.Message]]:
        """Wait for the answers to ``numbers``; return them as (type, message), in that order."""
        while not all(n in self.got for n in numbers):
            self.sftp._read_response()
        return [self.got.pop(n) for n in numbers]

    @staticmethod
    def request(sftp: paramiko.SFTPClient, t: int, *args) -> tuple[int, paramiko.Message]:
        """Send one request and wait for its answer; return (type, message)."""
        return sftp._request(t, *args)


def _authenticate(transport: paramiko.Transport, remote, settings, prompt) -> None:
    """Try the key file, then the agent, then the password; TransportFatalError if all fail."""
    tried = []
    if settings.key_file:
        passphrase = _secret(settings.key_passphrase, "CNSX_KEY_PASSPHRASE",
                             _("passphrase for {file}").format(file=settings.key_file), remote, prompt)
        try:
            key = paramiko.PKey.from_path(str(settings.key_file), passphrase.encode() if passphrase else None)
        except FileNotFoundError:
            raise ConfigError(_("key_file {file} does not exist").format(file=settings.key_file),
                              _("fix key_file in the profile")) from None
        except paramiko.PasswordRequiredException:
            raise ConfigError(_("key_file {file} is encrypted and no passphrase source is set").format(file=settings.key_file),
                              _('set key_passphrase = "env" (CNSX_KEY_PASSPHRASE), "keyring" or "prompt"')) from None
        except (paramiko.SSHException, ValueError) as exc:
            raise ConfigError(_("key_file {file}: cannot load ({error})").format(file=settings.key_file, error=exc),
                              _("check the key and its passphrase")) from None
        if _try(transport.auth_publickey, remote.user, key):
            return
        tried.append(_("key file"))
    if settings.use_agent:
        for key in paramiko.Agent().get_keys():
            if _try(transport.auth_publickey, remote.user, key):
                return
        tried.append("ssh-agent")
    if settings.password:
        password = _secret(settings.password, "CNSX_PASSWORD", _("password for {remote}").format(remote=remote), remote, prompt)
        if password and _try(transport.auth_password, remote.user, password):
            return
        tried.append(_("password"))
    if not tried:
        raise ConfigError(_("{remote}: no authentication is configured").format(remote=remote),
                          _("set key_file, use_agent or password in the profile"))
    raise TransportFatalError(_("{remote}: authentication failed ({tried})").format(remote=remote, tried=join(", ", tried)),
                              _("check the user name, the key or the password issued by the CNS"))


def _try(method, *args) -> bool:
    try:
        method(*args)
        return True
    except paramiko.AuthenticationException:
        return False
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise TransportRetryableError(_("authentication interrupted ({error})").format(error=exc), _("run again later")) from None


def _secret(source: str | None, env: str, what: str, remote, prompt) -> str | None:
    """Fetch a secret from its source: env, keyring or prompt; never from argv or the file."""
    if not source:
        return None
    if source == "env":
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(_("{what}: {env} is not set").format(what=what, env=env),
                              _("export {env} in the environment of the run").format(env=env))
        return value
    if source == "keyring":
        try:
            import keyring
        except ImportError:
            raise ConfigError(_("{what}: the keyring package is not installed").format(what=what),
                              _("pip install keyring, or use env/prompt")) from None
        value = keyring.get_password("cnsx", f"{env}:{remote}")
        if value is None:
            raise ConfigError(_("{what}: nothing stored in the keyring under cnsx / {env}:{remote}").format(
                what=what, env=env, remote=remote), _("store it: keyring set cnsx {env}:{remote}").format(env=env, remote=remote))
        return value
    if prompt is None:
        raise ConfigError(_("{what}: a prompt is configured, but this run has no terminal").format(what=what),
                          _("use env or keyring under cron"))
    return prompt(what)


def _error(exc: BaseException, name: str) -> Exception:
    """Map a transfer failure to retryable (network, server) or fatal (permissions, missing)."""
    if isinstance(exc, (EOFError, socket.timeout, ConnectionError, paramiko.SSHException)):
        return TransportRetryableError(_("{name}: connection lost ({reason})").format(name=name, reason=exc or type(exc).__name__),
                                       _("the server or the network failed: cnsx will try again"))
    if isinstance(exc, PermissionError):
        return TransportFatalError(_("{name}: permission denied on the server").format(name=name),
                                   _("check the remote folders with the CNS"))
    if isinstance(exc, FileNotFoundError):
        return TransportFatalError(_("{name}: no such file or folder on the server").format(name=name),
                                   _("check upload_dir / download_dir"))
    return TransportRetryableError(_("{name}: {reason}").format(name=name, reason=exc), _("run again later"))
