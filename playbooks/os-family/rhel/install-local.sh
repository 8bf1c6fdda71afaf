dnf install -y -q {{ package_file | quote }}
