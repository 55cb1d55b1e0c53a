#!/bin/sh
# The include graph of src/ runs one way (docs/ARCHITECTURE.md, "Layers"):
#   os -> util -> kernels, codec -> model -> io, image -> api
# (codec: checksums, DEFLATE, zlib/gzip; it sits beside kernels and needs only util)
# A file may include headers of its own folder and of folders below it, never above or beside
# (io and image do not include each other). A folder not in the table below fails the check: add
# it to the table and to docs/ARCHITECTURE.md, at the level it belongs.
cd "$(dirname "$0")/.." || exit 1
rank() {
    case "$1" in
        os) echo 0 ;; util) echo 1 ;; kernels|codec) echo 2 ;; model) echo 3 ;;
        io|image) echo 4 ;; api) echo 5 ;; *) echo -1 ;;
    esac
}
bad=0; n=0
for f in src/*/*.c src/*/*.h; do
    [ -f "$f" ] || continue
    from=$(basename "$(dirname "$f")")
    rf=$(rank "$from")
    if [ "$rf" -lt 0 ]; then
        echo "check_layers: $f: folder src/$from is not in the layer table"; bad=$((bad + 1)); continue
    fi
    # every quoted include that names a folder: "../model/model.h", "model/model.h"
    for to in $(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(\.\./\)\{0,1\}\([A-Za-z0-9_]*\)/.*|\2|p' "$f"); do
        n=$((n + 1))
        [ "$to" = "$from" ] && continue
        rt=$(rank "$to")
        if [ "$rt" -lt 0 ] || [ "$rt" -ge "$rf" ]; then
            echo "check_layers: $f includes src/$to/: $from may include only folders below it"; bad=$((bad + 1))
        fi
    done
done
# Public entry points live in src/api (docs/ARCHITECTURE.md, "The API layer"): src/model and src/io
# define none.
for f in $(grep -l '^MAE_API' src/model/*.c src/io/*.c 2>/dev/null); do
    echo "check_layers: $f defines an MAE_API function: entry points go in src/api/*_api.c"; bad=$((bad + 1))
done
if [ "$bad" -ne 0 ]; then
    echo "check_layers: $bad include(s) or entry point(s) against the layer graph (docs/ARCHITECTURE.md)"; exit 1
fi
echo "check_layers: $n cross-folder includes follow os -> util -> kernels/codec -> model -> io/image -> api"
