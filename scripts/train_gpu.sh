#!/usr/bin/env bash
# Turn a lent GPU into weights in one call: train the default model's design (configs/
# cpu-exemplar.yaml) on CUDA in bf16 for a fixed wall-clock budget, checkpointing as it goes,
# then export a release (fp16 safetensors + config.json) from the best checkpoint.
#
#   scripts/train_gpu.sh prepare          # here, once: fills .gpu/ (ignored by git) with what the
#                                         # GPU machine cannot download: the pypatchmatch wheel for
#                                         # its Python, the VGG16 weights (fp16, for the losses)
#                                         # and the photos (QUALITY=85: JPEG quality; the device
#                                         # machine takes 64 MiB of checkout and carry together;
#                                         # STAGE=edge: photos only, all that G1 needs)
#   scripts/train_gpu.sh run [MINUTES]    # there: train for MINUTES (default 8), export to $OUT
#
# With the device tool: run(command="scripts/train_gpu.sh run 8", carry=[".gpu"], timeout_s=600).
# Environment for `run`: OUT (default ./gpu-run: release/ = best checkpoint, latest/, logs; from a
# release INIT they keep its inference settings and its G2 for drawn edges), RUN
# (checkpoints; default $OUT/run), INIT (release to start from; default the shipped
# weights; "none" = from scratch), WIDTH / BLOCKS (default: the shipped design; the paper's full
# width is WIDTH=64 BLOCKS=8, which needs INIT=none and far more than one short lease), DEVICE
# (default cuda), STAGE (default inpaint-on-predicted; joint from scratch; edge: G1 alone;
# inpaint: G2 on true edges only, the G2 for drawn edges: INIT=checkpoints/long-run, then
# `edgefill attach-drawn src/edgefill/weights/default $OUT/latest`), BATCH,
# CROP, WORKERS, EXTRA (more `--set key=value` words), DATA (photos; default .gpu/data as packed
# by prepare, else ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-run}"
CARRY="${CARRY:-.gpu}"  # what travels beside the checkout (name it in the device call's carry)

if [ "$MODE" = "prepare" ]; then
    mkdir -p "$CARRY"
    case "$CARRY" in
        /*) ;;
        *) grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude ;;
    esac
    PY="${PYTHON:-.venv/bin/python}"
    rm -f "$CARRY"/*.whl "$CARRY/vgg16-fp16.safetensors"
    if [ "${STAGE:-}" != edge ]; then  # G1 alone needs neither PatchMatch nor VGG
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 -d "$CARRY" "pypatchmatch>=2.2"
        "$PY" - "$CARRY/vgg16-fp16.safetensors" <<'EOF'
import sys
from safetensors.torch import save_file
from edgefill.vgg import default_vgg_path, load_vgg_state
sd = {k: v.half().contiguous() for k, v in load_vgg_state(default_vgg_path()).items()}
save_file(sd, sys.argv[1])
print(f"wrote {sys.argv[1]}")
EOF
    fi
    # The photos travel too (the device machine sees only the checkout): the training split and
    # the validation photos the trainer scores, shrunk to the short side the loader keeps anyway
    # (2 x crop), as JPEG bytes under their own names (the split hashes the name; readers go by
    # the bytes).
    rm -rf "$CARRY/data"
    "$PY" - "${DATA:-../shared/data}" "$CARRY/data" "${CROP:-128}" "${QUALITY:-85}" <<'EOF'
import sys
from pathlib import Path

import cv2

from edgefill.config import DataConfig
from edgefill.data import list_images, split
from edgefill.image import shrink_short_side

src, dst, crop, quality = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
train, val = split(list_images(src), DataConfig.val_fraction)
files = train + val[: DataConfig.val_count]
for f in files:
    bgr = shrink_short_side(cv2.imread(str(f), cv2.IMREAD_COLOR), 2 * crop)  # as the loader does
    out = dst / f.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
print(f"packed {len(train)} training + {len(files) - len(train)} validation photos into {dst}")
EOF
    tree=$(git ls-files -z | xargs -0 cat | wc -c)
    carry=$(du -sb "$CARRY" | cut -f1)
    echo "travels: tracked files $((tree >> 20)) MiB + $CARRY/ $((carry >> 20)) MiB (the device takes 64 MiB)"
    if [ $(((tree + carry) >> 20)) -ge 64 ]; then
        echo "too much for one call: lower QUALITY, or take docs/ and tests/ out of the tree" >&2
    fi
    exit 0
fi

if [ "$MODE" != "run" ]; then
    echo "usage: scripts/train_gpu.sh prepare | run [MINUTES]" >&2
    exit 2
fi
MINUTES="${2:-8}"
OUT="${OUT:-$PWD/gpu-run}"
RUN="${RUN:-$OUT/run}"  # checkpoints; put it outside OUT where OUT comes back file by file
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
if [ -z "${DATA:-}" ]; then
    DATA="$CARRY/data"  # packed by prepare
    [ -d "$DATA" ] || DATA=../shared/data
fi
if ls "$CARRY"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/edgefill-site "$CARRY"/*.whl
    export PYTHONPATH="/tmp/edgefill-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
VGG="${VGG:-}"
[ -z "$VGG" ] && [ -f "$CARRY/vgg16-fp16.safetensors" ] && VGG="$CARRY/vgg16-fp16.safetensors"
INIT="${INIT:-src/edgefill/weights/default}"
WORKERS="${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))}"
SETS=(--set "data.num_workers=$WORKERS" --set "train.batch_size=${BATCH:-32}"
      --set "data.crop_size=${CROP:-128}" --set train.threads=0 --set train.save_every=100
      --set train.val_every=100 --set train.sample_every=100)
[ -n "$VGG" ] && SETS+=(--set "loss.vgg_weights=$VGG")
[ -n "${WIDTH:-}" ] && SETS+=(--set "model.width=$WIDTH")
[ -n "${BLOCKS:-}" ] && SETS+=(--set "model.edge_blocks=$BLOCKS" --set "model.inpaint_blocks=$BLOCKS")
START=()
if [ "$INIT" = "none" ]; then
    STAGE="${STAGE:-joint}"  # from scratch: both generators, end to end
elif [ "${STAGE:-inpaint-on-predicted}" = "inpaint-on-predicted" ]; then
    STAGE=inpaint-on-predicted
    START=(--init "$INIT" --edge-weights "$INIT")
else
    START=(--init "$INIT")  # e.g. STAGE=edge: G1 alone (its data needs no pre-fill)
fi
# The device image's OpenCV lacks cv2.xphoto (FSR) and the contrib wheel is too big to carry:
# there the exemplar copy's thin parts train without FSR (train.thin_fsr, docs/training.md).
if [ "$STAGE" != edge ] && ! "$PY" -c "import cv2; cv2.xphoto.inpaint" 2>/dev/null; then
    echo "train_gpu: OpenCV here has no cv2.xphoto: training with train.thin_fsr=false"
    SETS+=(--set train.thin_fsr=false)
fi
mkdir -p "$OUT"
echo "train_gpu: stage $STAGE for $MINUTES min on $DEVICE, data $DATA, run $RUN, out $OUT"
# SIGINT at the budget: every checkpoint (save_every steps) is complete, so the export below
# takes the best of them. `timeout` exits 124 then, which is the expected end here. --foreground:
# the signal goes to the trainer alone (plain `timeout` signals its process group as well; the
# session-28 edge run, before the trainer took such an echo as one request, ended "interrupted").
set +e
timeout --foreground --signal=INT "$(awk "BEGIN{print int($MINUTES*60)}")" \
    "$PY" -m edgefill.cli train --config configs/cpu-exemplar.yaml --stage "$STAGE" \
    --data "$DATA" --out "$RUN" --device "$DEVICE" "${START[@]}" "${SETS[@]}" \
    ${EXTRA:-} 2>&1 | stdbuf -oL tr '\r' '\n' | grep --line-buffered -v '^ *[0-9]*%|' \
    | tee "$OUT/train.log" | tail -n 40
set -e
EXPORT=()
case "$STAGE" in  # the generator the stage does not train, as it was
    edge | inpaint) EXPORT=(--edge-from "$INIT") ;;
esac
# Fine-tuned from a release: the export keeps what that release chose beyond its weights (copy
# guide, copy detail, its G2 for drawn edges; `export --base`). Not for STAGE=inpaint, whose G2
# is a G2 for drawn edges, released on its own for `attach-drawn`.
if [ "$STAGE" != inpaint ] && [ -f "$INIT/config.json" ]; then
    EXPORT=(--base "$INIT")
fi
"$PY" -m edgefill.cli export "$RUN" -o "$OUT/release" "${EXPORT[@]}"
"$PY" -m edgefill.cli export "$RUN" -o "$OUT/latest" --latest "${EXPORT[@]}"
cp "$RUN/val_log.csv" "$RUN/train_log.csv" "$OUT/" 2>/dev/null || true
ls -la "$OUT/release" "$OUT/latest"
