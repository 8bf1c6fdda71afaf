repo={{ (inventory.packages.dockerRepo | replace("{distro}", facts.os_id)) | quote }}
test -s /etc/apt/keyrings/docker.gpg &&
  test "$(stat -c %a /etc/apt/keyrings/docker.gpg)" = 644 &&
  test "$(cat /etc/apt/sources.list.d/docker.list 2>/dev/null)" = "deb [signed-by=/etc/apt/keyrings/docker.gpg] ${repo%/} {{ facts.os_codename }} stable"
