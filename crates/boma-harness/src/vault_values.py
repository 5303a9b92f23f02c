# Print, as a JSON list, every value the ansible-vault holds in the given files (inline `!vault`
# values and whole encrypted files), decrypted with the password file given first. The harness
# registers each for redaction before a run that needs the vault: what it knows, it can mask.
# Run by the repository's venv python (it uses ansible-core's own vault and YAML loader).
import json
import sys

from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultSecret
from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode

password_file, *files = sys.argv[1:]
with open(password_file, "rb") as handle:
    secret = VaultSecret(handle.read().strip())
loader = DataLoader()
loader.set_vault_secrets([("default", secret), ("boma", secret)])

found = []


def walk(node):
    if isinstance(node, AnsibleVaultEncryptedUnicode):
        found.append(str(node))
    elif isinstance(node, dict):
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)


for path in files:
    data = loader.load_from_file(path)
    with open(path, "rb") as handle:
        whole_file_encrypted = handle.read(14) == b"$ANSIBLE_VAULT"
    if whole_file_encrypted:
        # A file encrypted whole: every scalar in it is secret.
        def scalars(node):
            if isinstance(node, dict):
                for value in node.values():
                    yield from scalars(value)
            elif isinstance(node, list):
                for value in node:
                    yield from scalars(value)
            elif isinstance(node, str):
                yield node
        found.extend(scalars(data))
    else:
        walk(data)

json.dump(found, sys.stdout)
