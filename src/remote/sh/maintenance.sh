# Maintenance mode: the page nginx answers with (503) while it exists; the site's configuration
# checks for it on every request (templates/nginx/partials/maintenance.hbs). POSIX sh (dash).

# maintenance_on PAGE: the page from base64 on stdin, readable by nginx, put in place whole.
maintenance_on() {
  install -d -m 0755 -o root -g root "${1%/*}" &&
    base64 -d >"$1.new" && chmod 0644 "$1.new" && mv -f "$1.new" "$1"
}

# maintenance_off PAGE
maintenance_off() {
  rm -f "$1"
}
