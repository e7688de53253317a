"""Steps of deploy/run-production that are easier in Python than in shell.

    python deploy/prepare.py secrets VAR_DIR     -> prints `export NAME=value` lines
    python deploy/prepare.py tls VAR_DIR         -> prints the cert and key paths
    python deploy/prepare.py database URL        -> creates the database if missing

Runs before Django is set up (the settings need the secrets it prints), so it imports
nothing from the project.
"""

import os
import secrets
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Each secret and how a new one is made when the environment does not give it.
SECRETS = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "CUSTOMER_ID_HMAC_KEY": lambda: secrets.token_hex(32),
    "CUSTOMER_ID_ENCRYPTION_KEY": lambda: secrets.token_hex(32),
}


def production_secrets(var_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    """The environment's secrets; any missing one generated once into
    VAR_DIR/production.env (mode 600) and reused on every later start.

    Losing that file loses the customer-id keys: existing hashes no longer match
    and open deletion requests cannot be decrypted, hence the message.
    """
    path = var_dir / "production.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in SECRETS and value:
                stored[name] = value
    generated = []
    for name, make in SECRETS.items():
        if environ.get(name):
            continue
        if name not in stored:
            stored[name] = make()
            generated.append(name)
    if generated:
        var_dir.mkdir(parents=True, exist_ok=True)
        _replace_private_file(
            path, "".join(f"{name}={value}\n" for name, value in stored.items())
        )
        print(
            f"== generated {', '.join(generated)} into {path} (mode 600): keep this "
            "file (or set the variables in the environment); the customer-id keys "
            "cannot be recovered",
            file=sys.stderr,
        )
    return {name: environ.get(name) or stored[name] for name in SECRETS}


def _replace_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 600) without ever truncating the old file: a
    temporary file in the same directory, fsynced, then renamed over it. A crash
    leaves either the old file or the new one, never a half-written secrets file
    (the only copy of the customer-id keys)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def self_signed_certificate(var_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made once, so the
    stack runs over HTTPS as production does (secure cookies, HSTS)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = var_dir / "tls"
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpsConsole local")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.chmod(0o600)  # touch's mode applies only to a new file
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    print(f"== generated a self-signed TLS certificate in {directory}", file=sys.stderr)
    return cert_path, key_path


def ensure_database(url: str) -> None:
    """CREATE DATABASE when a PostgreSQL URL names one that does not exist."""
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    with psycopg.connect(
        host=config["HOST"] or "127.0.0.1",
        port=config["PORT"] or 5432,
        user=config["USER"] or "postgres",
        password=config["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not exists:
            connection.execute(
                f'CREATE DATABASE "{config["NAME"].replace(chr(34), "")}"'
            )
            print(f"== created database {config['NAME']}", file=sys.stderr)


def main(argv: list[str]) -> None:
    command, argument = argv[1], argv[2]
    if command == "secrets":
        for name, value in production_secrets(Path(argument), dict(os.environ)).items():
            print(f"export {name}={shlex.quote(value)}")
    elif command == "tls":
        cert, key = self_signed_certificate(Path(argument))
        print(cert, key)
    elif command == "database":
        ensure_database(argument)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv)
