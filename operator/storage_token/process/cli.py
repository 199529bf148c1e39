"""The `storage-token` console script.

storage-token run           run the operator (kopf) against the current kubeconfig
storage-token sandbox       local control plane + emulators + operator + samples
storage-token provider ...  check a provider account; issue/list/revoke keys
storage-token emulator ...  run a provider emulator on loopback
storage-token plan|status|renew|inspect  as `kubectl storage-token` (plan a change, see tokens by expiry, ...)
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _emulator(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"storage_token.dev.emulators.{args.kind}")
    result: int = module.main(args.rest)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storage-token", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)

    from storage_token.process import plugin_cli, provider_cli

    provider_cli.add_parser(subparsers)
    plugin_cli.add_parsers(subparsers)

    emulator = subparsers.add_parser("emulator", help="run a provider emulator on loopback (for tests and demos)")
    emulator.add_argument("kind", choices=("us3", "b2"))
    emulator.add_argument("rest", nargs=argparse.REMAINDER, help="options of that emulator (see its --help)")
    emulator.set_defaults(func=_emulator)

    # The development harness (storage_token.dev) is not in the operator image: its commands are
    # offered only where it is installed.
    for name in ("storage_token.process.run_cli", "storage_token.dev.sandbox_cli"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
