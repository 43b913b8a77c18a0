"""`hub admin`: the cockpit's users (issue 17).

    hub admin hash-password     an argon2id hash for `admin.users[].password_hash`: asks for
                                the password twice on a terminal, or reads the first line of
                                standard input when that is not a terminal (scripts, pipes)

The password never appears in the command line, the shell history or a file.
"""

from __future__ import annotations

import getpass
import sys

import typer

from hub.auth import hash_password
from hub.cli.common import err

admin_app = typer.Typer(help="The cockpit's users: password hashes for the admin area.", no_args_is_help=True)
MIN_LENGTH = 8


@admin_app.command("hash-password")
def hash_password_command() -> None:
    """Print an argon2id hash of a password for `admin.users[].password_hash`."""
    if sys.stdin.isatty():
        password = getpass.getpass("Passwort: ")
        if getpass.getpass("Noch einmal: ") != password:
            err.print("Die beiden Eingaben stimmen nicht überein; nichts erzeugt.", style="red")
            raise typer.Exit(2)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        err.print("Kein Passwort angegeben; nichts erzeugt.", style="red")
        raise typer.Exit(2)
    if len(password) < MIN_LENGTH:  # a warning, not a refusal: the town decides its own rules
        err.print(f"Warnung: das Passwort ist kurz. Besser mindestens {MIN_LENGTH} Zeichen, am besten ein Satz aus "
                  "mehreren Wörtern.", style="yellow")
    sys.stdout.write(hash_password(password) + "\n")
    if sys.stdin.isatty():
        err.print('In die Konfiguration, in Anführungszeichen:\n  admin:\n    users:\n'
                  '      - {name: anna, password_hash: "<der Hash oben>", role: admin}', highlight=False)
