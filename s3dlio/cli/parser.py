"""The command line: every subcommand, its flags, and the function that
runs it (``args.func``)."""
from __future__ import annotations

import argparse

from .. import __version__
from .bench import cmd_bench
from .buckets import cmd_mb, cmd_rb
from .listing import cmd_ls, cmd_stat
from .objects import cmd_cat, cmd_rm
from .sizes import parse_size
from .transfer import cmd_cp, cmd_download, cmd_get, cmd_put, cmd_upload

DEFAULT_IN_FLIGHT = 32


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"must be from 1 to {1 << 20}: {text!r}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The flags every command takes, before or after its name.  The
    subcommands' copies default to SUPPRESS so they never undo a flag given
    before the command name."""
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no progress bars or summaries")
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="library logging on stderr: -v info, -vv debug")
    parser.add_argument("--debug", action="store_true", default=default(False),
                        help="print the traceback of an error")


def _json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def _in_flight(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--max-in-flight", type=_positive_int, default=DEFAULT_IN_FLIGHT,
                        metavar="N", help=f"objects in flight at once (default {DEFAULT_IN_FLIGHT})")


def _pattern(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-p", "--pattern", metavar="GLOB",
                        help=f"only {what} whose path relative to the prefix, or whose name, "
                             "matches GLOB (* also matches /)")


def _bulk(parser: argparse.ArgumentParser, what: str) -> None:
    """The flags of the commands that copy many objects."""
    _pattern(parser, what)
    _in_flight(parser)
    _json(parser, "a summary")
    _ranks_flag(parser)


def _ranks_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranks", action="store_true",
                        help="split the work across the ranks of an MPI job (mpirun/srun); "
                             "rank 0 prints the totals")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3dlio", description="Copy, list and benchmark objects on S3, GCS, Azure and "
        "local disks (s3://, gs://, az://, file://, direct://). See docs/cli.md.")
    parser.add_argument("--version", action="version", version=f"s3dlio {__version__}")
    _global_flags(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, aliases: tuple[str, ...] = (),
                add_help: bool = True) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text,
                                   aliases=list(aliases), parents=[common], add_help=add_help)

    ls = command("ls", "list objects (one level; -r for all)", ("list",), add_help=False)
    ls.add_argument("--help", action="help", help="show this help message and exit")
    ls.add_argument("uri", metavar="URI")
    ls.add_argument("-r", "--recursive", action="store_true", help="every object below URI")
    ls.add_argument("-l", "--long", action="store_true",
                    help="size, last-modified time and URI (one stat per object)")
    ls.add_argument("-h", "--human-readable", dest="human", action="store_true",
                    help="with -l: sizes as 1.5 MiB")
    ls.add_argument("-c", "--count", action="store_true", help="print only the number of entries")
    _pattern(ls, "entries")
    _json(ls, "the listing")
    ls.set_defaults(func=cmd_ls)

    stat = command("stat", "print an object's metadata")
    stat.add_argument("uri", metavar="URI")
    _json(stat, "the metadata")
    stat.set_defaults(func=cmd_stat)

    cp = command("cp", "copy objects: local <-> remote, remote -> remote, local -> local")
    cp.add_argument("src", metavar="SRC")
    cp.add_argument("dst", metavar="DST")
    cp.add_argument("-r", "--recursive", action="store_true",
                    help="copy everything under SRC/ to DST/, keeping relative paths")
    _bulk(cp, "copy objects")
    cp.set_defaults(func=cmd_cp)

    get = command("get", "download one object to a local file")
    get.add_argument("uri", metavar="URI")
    get.add_argument("dest", metavar="DEST", nargs="?", default=".",
                     help="local file or directory (default: the current directory)")
    _json(get, "a summary")
    get.set_defaults(func=cmd_get)

    put = command("put", "upload one local file (or stdin: -) to an object")
    put.add_argument("src", metavar="SRC")
    put.add_argument("uri", metavar="URI", help="object URI, or a prefix ending in /")
    _json(put, "a summary")
    put.set_defaults(func=cmd_put)

    upload = command("upload", "upload local files and directories under a prefix")
    upload.add_argument("sources", metavar="SRC", nargs="+")
    upload.add_argument("dest", metavar="DEST_PREFIX")
    _bulk(upload, "upload files")
    upload.set_defaults(func=cmd_upload)

    download = command("download", "download every object under a prefix into a local directory")
    download.add_argument("src", metavar="URI")
    download.add_argument("dest", metavar="DEST_DIR")
    _bulk(download, "download objects")
    download.set_defaults(func=cmd_download)

    rm = command("rm", "delete an object (-r: everything under a prefix)", ("delete",))
    rm.add_argument("uri", metavar="URI")
    rm.add_argument("-r", "--recursive", action="store_true")
    _pattern(rm, "delete objects")
    _in_flight(rm)
    _ranks_flag(rm)
    rm.set_defaults(func=cmd_rm)

    mb = command("mb", "create a bucket (or Azure container)", ("create-bucket",))
    mb.add_argument("bucket", metavar="BUCKET_URI")
    mb.set_defaults(func=cmd_mb)

    rb = command("rb", "delete an empty bucket (or Azure container)", ("delete-bucket",))
    rb.add_argument("bucket", metavar="BUCKET_URI")
    rb.add_argument("--force", action="store_true", help="delete every object in it first")
    rb.set_defaults(func=cmd_rb)

    cat = command("cat", "write objects' bytes to stdout")
    cat.add_argument("uris", metavar="URI", nargs="+")
    cat.add_argument("--offset", type=_size, default=0, metavar="BYTES")
    cat.add_argument("--length", type=_size, default=None, metavar="BYTES")
    cat.set_defaults(func=cmd_cat)

    bench = command("bench", "PUT then GET synthetic objects; print MB/s, ops/s, latency")
    bench.add_argument("uri_prefix", metavar="URI_PREFIX")
    bench.add_argument("-s", "--size", type=_size, default=1 << 20, metavar="SIZE",
                       help="bytes per object (default 1MiB)")
    bench.add_argument("-n", "--count", type=_positive_int, default=100, metavar="N",
                       help="objects (default 100)")
    bench.add_argument("-j", "--concurrency", type=_positive_int, default=DEFAULT_IN_FLIGHT,
                       metavar="N", help=f"requests in flight (default {DEFAULT_IN_FLIGHT})")
    bench.add_argument("--keep", action="store_true", help="leave the objects in place")
    _json(bench, "the results")
    _ranks_flag(bench)
    bench.set_defaults(func=cmd_bench)
    return parser
