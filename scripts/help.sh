# Sourced first by every command in scripts/ and bench/ (not run): `COMMAND --help` or
# `COMMAND -h` prints the command's usage, its header comment, and exits 0 before anything
# starts. A command whose arguments pass through to another tool still answers its own.
if [[ ${1-} == -h || ${1-} == --help ]]; then
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
fi
