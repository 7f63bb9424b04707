#!/bin/sh
# Removes Link Peeler from a Mac (run with sudo; MDM tools can run it as a
# script). macOS packages have no uninstaller of their own. Leaves user data:
# ~/Library/Application Support/link-peeler and the login keychain entry
# (service "link-peeler") stay with each user.
set -u
label=com.linkpeeler.agent
for uid in $(ps -axo uid=,comm= | awk '/Link Peeler.app\/Contents\/MacOS\/link-peeler$/ { print $1 }' | sort -u); do
  launchctl bootout "gui/$uid/$label" 2>/dev/null || true
done
user="$(stat -f%Su /dev/console 2>/dev/null || true)"
if [ -n "$user" ] && [ "$user" != root ] && [ "$user" != loginwindow ]; then
  if uid="$(id -u "$user" 2>/dev/null)"; then
    launchctl bootout "gui/$uid/$label" 2>/dev/null || true
  fi
fi
rm -f "/Library/LaunchAgents/$label.plist"
rm -rf "/Applications/Link Peeler.app"
pkgutil --forget "$label.pkg" >/dev/null 2>&1 || true
echo "Link Peeler removed. Managed preferences come from your MDM profile: remove the profile there."
