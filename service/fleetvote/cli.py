"""``fleetvote``: one entry point, one subcommand per task, every one registered from ``COMMANDS``.

The CLI is where the wings meet: it imports the runtime, the offline tools (``offline/``) and the
test bed (``testbed/``), and nothing imports it back (what commands share lives in
``command.py``). Its own commands are the two of the training package (train, export) and serve,
which wires the test bed's virtual boards into the service. Subcommands import heavy packages
(TensorFlow, matplotlib, tflite-micro) only when run, so the service's runtime environment (no
``train`` extra) still answers ``fleetvote --help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .command import ListOption, NoSecretOnArgv, add_data
from .errors import ConfigError, FleetvoteError
from .offline import (analyze, bom, cards, codegen, curves, ensemble_eval, evaluate, pareto, results_table,
                      retire, robustness, verify)
from .testbed import bench_api, bringup, qemu
from .testbed.virtual import BOARD_SPEEDS, VirtualFleet, planned_latency_ms

EPILOG = """\
examples:
  fleetvote train --arch vgg:12 --seed 7 --epochs 30 --out runs/vgg12-s7
  fleetvote export runs/vgg12-s7 --id vgg12-s7 --zoo models/zoo
  fleetvote eval models/zoo/vgg12-s31/model.tflite --split test
  fleetvote analyze models/zoo/vgg12-s31/model.tflite --board nucleo-f411re
  fleetvote card --check
  fleetvote serve --virtual          # the dashboard at http://127.0.0.1:8000/

Data: --data PATH or CIFAR10_PATH names cifar10-jpeg.tar.gz or cifar-10-python.tar.gz.
"""


def _cmd_train(a: argparse.Namespace) -> int:
    from fleetvote_models.train import train

    state = train(
        Path(a.out), a.arch, seed=a.seed, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
        augmentations=tuple(x for x in a.augment.split(",") if x), label_smoothing=a.label_smoothing,
        subset=a.subset, limit=a.limit, data=a.data, resume=a.resume, teacher=a.teacher,
        distill_alpha=a.distill_alpha, init=a.init, weight_decay=a.weight_decay, ema=a.ema,
        stop_after=a.stop_after,
    )
    print(f"best validation accuracy {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}; "
          f"{state['train_seconds']:.0f} s of training")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from fleetvote_models.export import export_run

    path = export_run(Path(a.run), a.id, Path(a.zoo), role=a.role, data=a.data,
                      calibration=a.calibration)
    print(f"wrote {path}")
    return 0


def serve_settings(a: argparse.Namespace):
    """The service's Settings from ``fleetvote serve``'s flags over FLEETVOTE_* (ConfigError, not
    a traceback, for a value out of range or a virtual-board option without --virtual)."""
    from .settings import Settings

    if not a.virtual and (a.replicas != 1 or a.board_speed != "host"):
        raise ConfigError("--replicas and --board-speed shape the virtual boards: add --virtual")
    settings = _settings(Settings, a)
    if a.virtual and a.board_speed == "host" and "boards_share_cpu" not in settings.model_fields_set:
        # host-speed virtual boards compute on this host's cores, beside the engine (planned-speed
        # ones mostly wait out their padding): admission counts the busy ones as the engine's rivals
        settings.boards_share_cpu = True
    return settings


def _cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn

    from . import logs
    from .api.app import create_app
    from .api.server import uvicorn_options
    from .ensemble import load_ensemble
    from .settings import ROOT

    settings = serve_settings(a)
    logs.setup(settings.log_json)
    virtual = None  # the test bed's boards, brought up and down by the app's lifespan
    if a.virtual:
        run_dir = Path(a.run_dir or ROOT / "run")
        ids = [m.id for m in load_ensemble(settings.ensemble, settings.zoo).members]
        latency = None
        if a.board_speed == "planned":
            plan = planned_latency_ms(ids, settings.zoo, settings.catalog)
            latency = {m: p["total_ms"] for m, p in plan.items()}
            print("virtual boards at planned speed (transfer + compute on the catalogue board, fleetvote plan): "
                  + ", ".join(f"{m} {p['total_ms']:.0f} ms on {p['board']}" for m, p in plan.items()),
                  file=sys.stderr)
        virtual = VirtualFleet(ids, run_dir / "boards", replicas=a.replicas, latency_ms=latency)
        settings.link_globs = settings.link_globs + [str(run_dir / "boards" / "*")]
    # the lifespan starts and stops the virtual boards: uvicorn re-raises SIGINT/SIGTERM after
    # its graceful shutdown, so code after uvicorn.run() would not run on a signal
    uvicorn.run(create_app(settings, board_supply=virtual), host=settings.host, port=settings.port,
                log_level="info", timeout_graceful_shutdown=5,
                log_config=logs.uvicorn_log_config(settings.log_json), **uvicorn_options(settings))
    return 0


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v}: at least 1")
    return v


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train one model (needs the 'train' extra)",
                       description="Seeded training with augmentation, a cosine learning-rate schedule, "
                                   "a checkpoint every epoch and --resume. Keeps the epoch with the best "
                                   "validation accuracy.",
                       epilog="example: fleetvote train --arch resnet:18 --seed 2 --epochs 40 --out runs/r18",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--arch", required=True, help="family[:width] or family:a-b-c-d (one width per stage): baseline, vgg:12, resnet:18, "
                   "dsconv:24, vggw:12-16-48-112, resnetw:16-16-32-80, dsconvw:16-48-96-224 ...")
    t.add_argument("--out", required=True, help="run directory (checkpoints, log, best weights)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.05, help="peak learning rate after a 1-epoch warm-up")
    t.add_argument("--augment", default="crop,flip", action=ListOption,
                   help="crop, flip, altflip (each image flipped on alternate epochs), cutout; repeated "
                        "or comma separated (default: %(default)s)")
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--weight-decay", type=float, default=5e-4, help="L2 coefficient of every kernel")
    t.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and keep an exponential moving average of the weights with this "
                        "decay per step (0.999 is about three epochs); 0: off")
    t.add_argument("--subset", type=float, default=1.0, help="train on this seeded share of the train split (bagging)")
    t.add_argument("--limit", type=int, help="train on the first N images only (smoke tests)")
    t.add_argument("--teacher", help="a .keras model (a finished run's checkpoint.keras) whose predictions on "
                   "each epoch's augmented view are mixed into the targets")
    t.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the teacher's targets")
    t.add_argument("--init", metavar="RUN", help="start from the best weights of this finished run of the same "
                   "--arch (a warm restart: a new cosine cycle from those weights)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="stop once this epoch of the schedule is done (--resume goes on later)")
    add_data(t)
    t.set_defaults(func=_cmd_train)


def _add_export(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="quantise a run to a full-int8 .tflite in the zoo (needs 'train')",
                       description="Full-integer post-training quantisation with TensorFlow's converter, "
                                   "calibrated on training images; asserts input scale 1/255, zero point "
                                   "-128 and the int8 softmax output (1/256, -128), then writes the card.",
                       epilog="example: fleetvote export runs/my-vgg12 --id vgg12-s7",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("run", help="run directory written by fleetvote train")
    e.add_argument("--id", required=True, help="model id in the zoo")
    e.add_argument("--zoo", default="models/zoo")
    e.add_argument("--role", choices=("member", "baseline", "reference"), default="member",
                   help="member: runs in a fleet; baseline: the seed's single-board model; reference: "
                        "MLPerf Tiny's ResNet-8 on one board, the comparison's bar")
    e.add_argument("--calibration", type=int, default=1000, help="training images for calibration")
    add_data(e)
    e.set_defaults(func=_cmd_export)


def _settings(settings_cls, a: argparse.Namespace):
    """The service's settings: the environment's, overridden by the flags given."""
    from pydantic import ValidationError

    from .errors import ConfigError

    given = {name: v for name in settings_cls.model_fields if (v := getattr(a, f"setting_{name}", None)) is not None}
    try:
        return settings_cls(**given)
    except ValidationError as exc:  # the messages only: an input may hold the API key
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
                             if e["type"] != "default_factory_not_called")  # a consequence, not a cause
        raise ConfigError(f"invalid settings (flags or FLEETVOTE_* variables): {problems}") from None


def _number_type(annotation) -> type | None:
    """int or float for a setting of that type (or optional), else None (argparse keeps the text)."""
    import typing

    kinds = {a for a in typing.get_args(annotation) or (annotation,) if a is not type(None)}
    return next(iter(kinds)) if len(kinds) == 1 and kinds <= {int, float} else None


def _add_settings_flags(s: argparse.ArgumentParser) -> None:
    """One flag per setting of ``settings.Settings``, made from its fields: ``--<name>`` with the
    field's description, its environment variable and its default. A list is a repeated flag in
    the singular (``--url A --url B``); a bool a pair (``--fallback``/``--no-fallback``); a secret
    has no flag (``--api-key`` says where to put it). A flag already on the parser is left as it is."""
    from pydantic_core import PydanticUndefined

    from .settings import LIST_FIELDS, ROOT, SECRET_FIELDS, Settings

    g = s.add_argument_group("settings", "each also FLEETVOTE_<NAME> in the environment (lists comma "
                                         "separated there); a flag given wins over the environment")
    for name, field in Settings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        flag = "--" + (name[:-1] if name in LIST_FIELDS else name).replace("_", "-")
        if flag in s._option_string_actions:
            continue
        default = field.default if field.default is not PydanticUndefined else None
        if isinstance(default, Path):
            default = default.relative_to(ROOT) if default.is_relative_to(ROOT) else default
        if isinstance(default, list):
            default = ",".join(default) or "none"
        help_ = f"{field.description or name.replace('_', ' ')} [FLEETVOTE_{name.upper()}"
        help_ += "]" if default is None else f"; default {default}]"
        kw = {"dest": f"setting_{name}", "help": help_.replace("%", "%%")}
        if field.annotation is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif name in LIST_FIELDS:
            g.add_argument(flag, action="append", metavar=name[:-1].upper(), **kw)
        else:  # numbers are typed here, so that `--queue-size many` is refused as the flags are read
            g.add_argument(flag, metavar=name.upper(), type=_number_type(field.annotation), **kw)
    g.add_argument("--api-key", nargs="?", action=NoSecretOnArgv, metavar="KEY",
                   help="not taken here (ps would show it): FLEETVOTE_API_KEY or --api-key-file")
    g.add_argument("--admin-key", nargs="?", action=NoSecretOnArgv, metavar="KEY",
                   help="not taken here (ps would show it): FLEETVOTE_ADMIN_KEY")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="run the HTTP service over the fleet",
                       description="Serves the dashboard at /, POST /classify, GET /boards, /ensemble, /healthz, "
                                   "/readyz, /metrics, the Open Inference Protocol (KServe v2) under /v2 and the "
                                   "docs at /docs. SIGHUP reloads the ensemble file without a restart (so does "
                                   "POST /admin/reload with the key in FLEETVOTE_ADMIN_KEY). Boards are found by "
                                   "USB VID:PID, link folders and --url; members without a board are computed by "
                                   "the numpy engine. "
                                   "Every setting is a flag and FLEETVOTE_<NAME> in the environment. udev "
                                   "rules, Docker Compose and boards on other hosts (ser2net): docs/deploy.md.",
                       epilog="examples:\n  fleetvote serve --virtual                 # one virtual board per member\n"
                              "  fleetvote serve --virtual --board-speed planned --replicas 2   # at real-board speed\n"
                              "  fleetvote serve --url /dev/ttyACM0 --url socket://10.0.0.5:7000\n"
                              "  fleetvote serve --url rfc2217://192.0.2.10:3331 --log-json   # a board behind ser2net\n"
                              "  FLEETVOTE_API_KEY_FILE=/run/secrets/key fleetvote serve --virtual  # key from a file",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--virtual", action="store_true", help="start virtual boards (host firmware): --replicas per member")
    s.add_argument("--replicas", type=_positive, default=1, metavar="N",
                   help="with --virtual: N virtual boards per member (default 1)")
    s.add_argument("--board-speed", choices=BOARD_SPEEDS, default="host",
                   help="with --virtual: host (as fast as this machine computes) or planned (each board takes its "
                        "member's latency on its catalogue board as `fleetvote plan` estimates it: serial transfer "
                        "+ compute, e.g. ~140-200 ms on a nucleo-f411re)")
    s.add_argument("--run-dir", help="where virtual boards put their links (default ./run)")
    _add_settings_flags(s)
    s.set_defaults(func=_cmd_serve)


# Every subcommand, in the order of ``fleetvote --help``: each entry registers one or more
# subparsers with set_defaults(func=...).
COMMANDS = (
    _add_train, _add_export, evaluate.add_parser, analyze.add_parser, cards.add_parser,
    verify.add_parser, codegen.add_parser, _add_serve, qemu.add_parser, curves.add_parser,
    bringup.add_parser, bench_api.add_parser, ensemble_eval.add_parser, bom.add_parser,
    pareto.add_parser, results_table.add_parser, robustness.add_parser, retire.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleetvote",
        description="A CIFAR-10 classifier made of several cheap STM32 boards that vote: "
                    "train and export the int8 models, measure them, and serve the fleet.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FleetvoteError as exc:
        print(f"fleetvote {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
