# The shared virtualenvs of an app, as far as they can be asked about without changing anything:
# which one a release needs and whether it is there, sealed. Both the facts script (to plan) and
# the release script (to decide for real) use these, so they cannot disagree on a name.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh`, run under dash by the unit tests.

# python_fingerprint: what decides, besides the requirements, what a virtualenv made with
# --system-site-packages holds and whether it still works: the interpreter python3 is (its
# version and build, its platform) and the distributions installed system-wide, which pip counts
# as installed and then leaves out of the virtualenv. Isolated (-I -S): no current folder, no
# user site, no .pth files, no PYTHON* variables.
python_fingerprint() {
  python3 -I -S -c 'import os, site, sys, sysconfig
print(sys.version)
print(sysconfig.get_platform(), sys.implementation.cache_tag)
for d in site.getsitepackages():
    try:
        names = os.listdir(d)
    except OSError:
        continue
    print(d, *sorted(n for n in names if n.endswith((".dist-info", ".egg-info"))))' 2>/dev/null
}

# venv_key DIGEST: the name of the virtualenv for DIGEST (the hash of the requirements, the
# package index and the like, made by the client) on this server's Python; fails without python3.
venv_key() {
  vk_python=$(python_fingerprint) || return 1
  printf 'stack-venv 1\n%s\n%s\n' "$1" "$vk_python" | sha256sum | cut -c1-64
}

# venv_ready DIR: the virtualenv in DIR was built whole and sealed: root owns it and root wrote
# its mark after sealing (the build user can write a mark too, but not one root owns).
venv_ready() {
  [ -d "$1" ] && [ ! -L "$1" ] && [ ! -L "$1/.stack-venv" ] &&
    [ "$(stat -c %U "$1" 2>/dev/null)" = root ] && [ "$(stat -c %U "$1/.stack-venv" 2>/dev/null)" = root ]
}
