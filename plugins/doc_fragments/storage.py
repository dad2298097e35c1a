# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the destination and object store options that every module has."""

from __future__ import annotations


class ModuleDocFragment(object):

    # The destination and the connection to the object store (storage_argument_spec()).
    DOCUMENTATION = r"""
options:
  destination_url:
    description:
      - Where the backups of every server are kept, as a URL of the object store.
      - For AWS S3 and S3-compatible stores V(s3://bucket/path/to/folder); an S3 access point
        ARN may take the place of the bucket, as in
        V(s3://arn:aws:s3:eu-west-1:123456789012:accesspoint/backups/path).
      - For Azure Blob Storage V(https://account.blob.core.windows.net/container/path); for an
        emulator such as Azurite, V(http://127.0.0.1:10000/account/container/path).
      - For Google Cloud Storage V(gs://bucket/path), or the console URL
        V(https://console.cloud.google.com/storage/browser/bucket/path).
      - The backups of O(server_name) are written under C(<destination_url>/<server_name>/),
        in the layout that C(barman-cloud-restore) and C(barman-cloud-backup-list) read.
      - Refused before anything is written - the message names O(destination_url) - when it holds
        a query string or a fragment (after C(?) or C(#); a SAS token goes in
        O(azure_storage_sas_token)), user information (C(user@)), parameters after C(;) in an
        http(s) URL, a control or invisible character (line break, tab, ...), spaces at either end,
        a folder that is empty (C(//)), V(.) or V(..) (or a look-alike of them), a backslash or a
        percent sign (percent-encoding is not decoded), or a bucket, container or account name
        that the store would not take. The path and O(server_name) together may take at most
        960 bytes, so that every object key stays within the stores' 1024.
      - Equivalent to the E(DESTINATION_URL) argument of C(barman-cloud-backup).
    type: str
    required: true
  server_name:
    description:
      - The name the backups of this PostgreSQL server are filed under at O(destination_url).
      - Use the same name for C(barman-cloud-wal-archive) and, later, for the restore.
      - A single folder name, not empty, not V(.) or V(..), without V(/), backslash, percent sign,
        control or invisible characters (a line break would reach the unit file of the
        C(scheduled_backup) role), or spaces at either end.
      - Equivalent to the E(SERVER_NAME) argument of C(barman-cloud-backup).
    type: str
    required: true
  cloud_provider:
    description:
      - The kind of object store O(destination_url) points to.
      - V(aws-s3) is AWS S3 and S3-compatible stores (MinIO, Ceph, ...), through boto3.
      - V(azure-blob-storage) is Azure Blob Storage, through azure-storage-blob.
      - V(google-cloud-storage) is Google Cloud Storage, through google-cloud-storage.
      - Options named after another provider (C(aws_*), C(azure_*), C(gcp_*), and the
        encryption options) are refused rather than ignored.
      - Equivalent to C(--cloud-provider) of C(barman-cloud-backup).
    type: str
    choices: [aws-s3, azure-blob-storage, google-cloud-storage]
    default: aws-s3
  endpoint_url:
    description:
      - The URL of the S3 API to use instead of the AWS default, for S3-compatible stores
        or private endpoints, for example V(https://minio.example.com:9000).
      - A host name (letters, digits, hyphens and dots; botocore refuses an underscore, as in
        C(minio_1)), an IPv4 address or a bracketed IPv6 address, with a port from 1 to 65535;
        no query string, fragment or user information.
      - For O(cloud_provider=aws-s3) only. An Azure endpoint is part of O(destination_url);
        the Google Cloud Storage SDK takes an emulator's from E(STORAGE_EMULATOR_HOST).
      - Equivalent to C(--endpoint-url) of C(barman-cloud-backup).
    type: str
  aws_profile:
    description:
      - A profile (a section name) of the AWS config and credentials files of the managed host.
      - When unset, boto3 looks for credentials in its usual order (environment,
        default profile, instance or task role).
      - Cannot be combined with O(aws_irsa).
      - Equivalent to C(-P/--aws-profile) of C(barman-cloud-backup); the alias O(profile)
        matches its deprecated C(--profile) spelling and is deprecated as well.
    type: str
    aliases: [profile]
  aws_irsa:
    description:
      - Use the IAM role of the Kubernetes service account (IRSA), for a module that runs
        inside an Amazon EKS pod, rather than a profile.
      - Requires the E(AWS_WEB_IDENTITY_TOKEN_FILE) environment that EKS sets in such pods;
        the task fails early, naming this option, where it is not set.
      - Not an option of C(barman-cloud-backup) 3.20.1, which has no C(--aws-irsa) (its
        documentation lists one that the tool does not accept). boto3 uses the web identity of
        the pod without any option, for this collection as for the reference tool; this one
        only makes that choice explicit and checked, and excludes O(aws_profile).
    type: bool
    default: false
  aws_access_key:
    description:
      - An AWS access key id to use instead of the credentials boto3 would find on the host.
      - Must be given together with O(aws_secret_key).
      - Not an option of C(barman-cloud-backup), which reads credentials from the environment
        and profiles only; handy for a key kept in Ansible Vault.
    type: str
    aliases: [access_key]
  aws_secret_key:
    description:
      - The secret access key that goes with O(aws_access_key).
      - Not an option of C(barman-cloud-backup).
    type: str
    aliases: [secret_key]
  aws_session_token:
    description:
      - The session token of temporary credentials given by O(aws_access_key) and O(aws_secret_key).
      - Not an option of C(barman-cloud-backup).
    type: str
    aliases: [session_token]
  read_timeout:
    description:
      - How many seconds to wait for data on an open connection to the object store before
        giving up on the request (which is then retried).
      - From 1 to 3600.
      - Equivalent to C(--read-timeout) of C(barman-cloud-backup).
    type: int
    default: 60
  addressing_style:
    description:
      - How the bucket appears in S3 request URLs.
      - V(virtual) puts it in the host name (C(bucket.s3.amazonaws.com)), V(path) in the
        path (C(s3.amazonaws.com/bucket)), as many S3-compatible stores need;
        V(auto) lets boto3 choose.
      - Equivalent to C(--addressing-style) of C(barman-cloud-backup).
    type: str
    choices: [auto, virtual, path]
    default: auto
  azure_credential:
    description:
      - Authenticate to Azure with an Azure AD (Entra ID) credential of this kind, through
        azure-identity, rather than with a key, a SAS token or a connection string.
      - V(azure-cli) uses the login of the Azure CLI on the managed host, V(managed-identity)
        the managed identity of the virtual machine, V(default) the chain of
        C(DefaultAzureCredential) (environment, workload identity, managed identity, CLI, ...).
      - When none of O(azure_credential), O(azure_storage_connection_string),
        O(azure_storage_sas_token) and O(azure_storage_key) is given, the environment
        variables E(AZURE_STORAGE_CONNECTION_STRING), E(AZURE_STORAGE_SAS_TOKEN) and
        E(AZURE_STORAGE_KEY) are used, in that order, as by C(barman-cloud-backup), and
        V(default) otherwise.
      - Needs an V(https://) O(destination_url).
      - Equivalent to C(--azure-credential) of C(barman-cloud-backup); the alias
        O(credential) matches its deprecated C(--credential) spelling and is deprecated as well.
    type: str
    choices: [azure-cli, managed-identity, default]
    aliases: [credential]
  azure_storage_connection_string:
    description:
      - A connection string of the storage account, as the Azure portal shows it; its
        endpoint takes the place of the account in O(destination_url).
      - The same as the E(AZURE_STORAGE_CONNECTION_STRING) environment variable that
        C(barman-cloud-backup) reads; handy for a secret kept in Ansible Vault.
      - For O(cloud_provider=azure-blob-storage); exclusive with the other Azure credentials.
    type: str
  azure_storage_sas_token:
    description:
      - A shared access signature (SAS) token for the container, with read, write, list and
        delete permissions.
      - The same as the E(AZURE_STORAGE_SAS_TOKEN) environment variable.
      - For O(cloud_provider=azure-blob-storage); exclusive with the other Azure credentials.
    type: str
  azure_storage_key:
    description:
      - An access key of the storage account named in O(destination_url).
      - The same as the E(AZURE_STORAGE_KEY) environment variable.
      - For O(cloud_provider=azure-blob-storage); exclusive with the other Azure credentials.
    type: str
  gcp_service_account_file:
    description:
      - The path, on the managed host, of a JSON key file of a Google service account.
      - When neither this nor O(gcp_service_account_contents) is given, the Application
        Default Credentials are used (E(GOOGLE_APPLICATION_CREDENTIALS), the metadata server
        of a Compute Engine instance, C(gcloud auth application-default login)).
      - For O(cloud_provider=google-cloud-storage).
    type: path
  gcp_service_account_contents:
    description:
      - The JSON key of a Google service account itself (a string or a dictionary), for
        a key kept in Ansible Vault rather than in a file on the host.
      - Prefer the JSON text, a string (for example C({{ key | to_json }})). Ansible hides every
        value of a C(no_log) dictionary on its own, so the values of a key given as a
        dictionary (its type, project id, ...) are masked wherever they occur in the output,
        even inside other words and key names.
      - For O(cloud_provider=google-cloud-storage); exclusive with O(gcp_service_account_file).
    type: jsonarg
notes:
  - Credentials for the object store are found, as by C(barman-cloud-backup), in the
    environment of the module, in the profiles of the managed host and in the provider's
    default chain (instance roles, for example). Options that carry secrets are never logged
    nor returned.
requirements:
  - python >= 3.9
  - boto3 (for O(cloud_provider=aws-s3))
  - azure-storage-blob (for O(cloud_provider=azure-blob-storage)), and azure-identity for O(azure_credential)
  - google-cloud-storage (for O(cloud_provider=google-cloud-storage))
"""

    # The SSE-C key, kept apart because modules that only read backups need it too
    # (sse_customer_key_argument_spec()).
    SSE_CUSTOMER_KEY = r"""
options:
  sse_customer_key:
    description:
      - A key of your own (SSE-C) with which S3 encrypts the objects of the backup; the
        same key is then needed to read them back, so every module that reads them takes it.
      - Either a V(file://) URI of a file that holds the key in base64, for example
        V(file:///etc/pgcloud/backup-key.b64), or the base64 text of the key itself.
      - The key is 32 bytes (256 bits) long before base64 encoding.
      - Cannot be combined with O(ignore:encryption) or O(ignore:sse_kms_key_id).
      - Equivalent to C(--sse-customer-key) of C(barman-cloud-backup), which takes the
        V(file://) form only.
    type: str
"""
