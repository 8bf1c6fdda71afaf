# Fetch the release package into a private cache, verify it when its sha256 is pinned, and
# only then give it its final name: a failed or tampered download never looks complete.
install -d -m 0700 /var/cache/installer
dest=/var/cache/installer/{{ vars.cri_dockerd.file | quote }}
curl -fsSL --retry 3 -o "$dest.part" {{ vars.cri_dockerd.url | quote }}
{% if vars.cri_dockerd.sha256 %}
have=$(sha256sum "$dest.part" | cut -d' ' -f1)
if [ "$have" != {{ vars.cri_dockerd.sha256 | quote }} ]; then
  rm -f "$dest.part"
  echo "{{ vars.cri_dockerd.url }}: sha256 $have, expected {{ vars.cri_dockerd.sha256 }}; the download is not the pinned release (check packages.criDockerdRepo / packages.criDockerdSha256)" >&2
  exit 1
fi
{% endif %}
mv "$dest.part" "$dest"
