/**
 * The privilege codes, `<SECTION>_<OBJECT>_<ACTION>`, from the permission matrix of Storware's
 * access management and the codes seen in its session API examples.
 */
export interface PrivilegeDefinition {
  readonly code: string;
  readonly section: string;
  readonly description: string;
}

const define = (section: string, entries: Record<string, string>): PrivilegeDefinition[] =>
  Object.entries(entries).map(([code, description]) => ({ code, section, description }));

export const PRIVILEGES: readonly PrivilegeDefinition[] = [
  ...define('Nodes', {
    NODE_READ: 'View node instances',
    NODE_REGISTER: 'Register new nodes',
    NODE_WRITE: 'Change node settings',
    NODE_DELETE: 'Remove nodes',
    NODE_CONFIG_READ: 'View node configurations',
    NODE_CONFIG_WRITE: 'Create and change node configurations',
  }),
  ...define('Virtual Environments', {
    VE_INSTANCE_READ: 'View virtual machines',
    VE_INSTANCE_WRITE: 'Change virtual machine settings',
    VE_INSTANCE_EXPORT_TASK_REGISTER: 'Back up a virtual machine',
    VE_INSTANCE_RESTORE_TASK_REGISTER: 'Restore a virtual machine',
    VE_INSTANCE_SNAPSHOT_TASK_REGISTER: 'Snapshot a virtual machine',
    VE_INSTANCE_MOUNT_TASK_REGISTER: 'Mount a backup for file-level restore',
    VE_INSTANCE_UNMOUNT_TASK_REGISTER: 'Unmount a mounted backup',
    VE_INSTANCE_SNAPSHOT_CLEAN_TASK_REGISTER: 'Clean old snapshots',
    VE_INFRASTRUCTURE_READ: 'View virtualization infrastructure',
    VE_INFRASTRUCTURE_WRITE: 'Add and change virtualization infrastructure',
    VE_INFRASTRUCTURE_CONNECTIVITY_TEST: 'Test connectivity to virtualization infrastructure',
    VE_BACKUP_SLA_READ: 'View virtual machine backup policies',
    VE_BACKUP_SLA_WRITE: 'Create and change virtual machine backup policies',
    VE_SNAPSHOT_SLA_READ: 'View snapshot policies',
    VE_SNAPSHOT_SLA_WRITE: 'Create and change snapshot policies',
    VE_RECOVERY_PLAN_READ: 'View recovery plans',
    VE_RECOVERY_PLAN_WRITE: 'Create and change recovery plans',
    VE_MOUNTED_BACKUP_READ: 'Browse mounted backups and download files',
  }),
  ...define('Applications', {
    APP_INSTANCE_READ: 'View applications',
    APP_INSTANCE_WRITE: 'Change application settings',
    APP_INSTANCE_EXPORT_TASK_REGISTER: 'Back up an application',
    APP_INSTANCE_RESTORE_TASK_REGISTER: 'Restore an application',
    APP_CMD_EXEC_CONFIG_READ: 'View execution configurations',
    APP_CMD_EXEC_CONFIG_WRITE: 'Create and change execution configurations',
    APP_BACKUP_SLA_READ: 'View application backup policies',
    APP_BACKUP_SLA_WRITE: 'Create and change application backup policies',
  }),
  ...define('Storage', {
    STORAGE_INSTANCE_READ: 'View storage instances',
    STORAGE_INSTANCE_WRITE: 'Change storage instance settings',
    STORAGE_INSTANCE_EXPORT_TASK_REGISTER: 'Back up a storage instance',
    STORAGE_INSTANCE_RESTORE_TASK_REGISTER: 'Restore a storage instance',
    STORAGE_INSTANCE_SNAPSHOT_TASK_REGISTER: 'Snapshot a storage instance',
    STORAGE_INSTANCE_MOUNT_TASK_REGISTER: 'Mount a storage backup for file-level restore',
    STORAGE_INSTANCE_UNMOUNT_TASK_REGISTER: 'Unmount a mounted storage backup',
    STORAGE_INSTANCE_SNAPSHOT_CLEAN_TASK_REGISTER: 'Clean old storage snapshots',
    STORAGE_INFRASTRUCTURE_READ: 'View storage infrastructure',
    STORAGE_INFRASTRUCTURE_WRITE: 'Add and change storage infrastructure',
    STORAGE_INFRASTRUCTURE_CONNECTIVITY_TEST: 'Test connectivity to storage infrastructure',
    STORAGE_BACKUP_SLA_READ: 'View storage backup policies',
    STORAGE_BACKUP_SLA_WRITE: 'Create and change storage backup policies',
    STORAGE_SNAPSHOT_SLA_READ: 'View storage snapshot policies',
    STORAGE_SNAPSHOT_SLA_WRITE: 'Create and change storage snapshot policies',
    STORAGE_MOUNTED_BACKUP_READ: 'Browse mounted storage backups',
  }),
  ...define('Reporting', {
    REPORTING_REPORT_READ: 'View reports',
    REPORTING_REPORT_SEND: 'Send reports by mail',
    REPORTING_AUDIT_LOG_READ: 'View the audit log',
  }),
  ...define('Backup Destinations', {
    BACKUP_DESTINATION_READ: 'View backup destinations',
    BACKUP_DESTINATION_WRITE: 'Add and change backup destinations',
    BACKUP_DESTINATION_CONNECTIVITY_TEST: 'Test connectivity to backup destinations',
    BACKUP_DESTINATION_CLEAN_TASK_REGISTER: 'Clean old backups',
  }),
  ...define('Access Management', {
    ACCESS_MANAGEMENT_READ: 'View users, groups and roles',
    ACCESS_MANAGEMENT_WRITE: 'Create and change users, groups and roles',
    ACCESS_MANAGEMENT_PASSWORD_CHANGE: "Change other users' passwords",
  }),
  ...define('Settings', {
    SETTINGS_READ: 'View settings',
    SETTINGS_WRITE: 'Change settings',
  }),
  ...define('Tasks Console', {
    TASK_CONSOLE_READ: 'See the tasks console',
    TASK_CONSOLE_WRITE: 'Cancel and remove tasks',
  }),
  ...define('Restore Job', {
    RESTORE_JOB_READ: 'View restore tasks',
  }),
  ...define('Credentials', {
    OS_CREDENTIAL_READ: 'View operating-system credentials',
    OS_CREDENTIAL_WRITE: 'Create and change operating-system credentials',
  }),
  ...define('Endpoints', {
    ENDPOINTS_SERVER_MANAGE: 'Receive a token for the Endpoints server-management service',
    ENDPOINTS_ORGANIZATION_ADMIN: 'Receive a token for the Endpoints organization-administration service',
  }),
];

export const ALL_PRIVILEGE_CODES: readonly string[] = PRIVILEGES.map((p) => p.code);

const readOnly = ALL_PRIVILEGE_CODES.filter((code) => code.endsWith('_READ'));

/** Built-in roles and groups, created (and kept in step with the catalog) at every start. */
export const BUILTIN_ROLES = {
  administrator: {
    name: 'Administrator',
    description: 'Every privilege',
    privileges: ALL_PRIVILEGE_CODES,
  },
  operator: {
    name: 'Operator',
    description: 'Day-to-day backup and restore; default for directory users',
    privileges: [
      ...readOnly.filter((code) => !code.startsWith('ACCESS_MANAGEMENT') && !code.startsWith('SETTINGS')),
      'VE_INSTANCE_EXPORT_TASK_REGISTER',
      'VE_INSTANCE_RESTORE_TASK_REGISTER',
      'VE_INSTANCE_SNAPSHOT_TASK_REGISTER',
      'VE_INSTANCE_MOUNT_TASK_REGISTER',
      'VE_INSTANCE_UNMOUNT_TASK_REGISTER',
      'APP_INSTANCE_EXPORT_TASK_REGISTER',
      'APP_INSTANCE_RESTORE_TASK_REGISTER',
      'STORAGE_INSTANCE_EXPORT_TASK_REGISTER',
      'STORAGE_INSTANCE_RESTORE_TASK_REGISTER',
      'STORAGE_INSTANCE_SNAPSHOT_TASK_REGISTER',
    ],
  },
  backupNode: {
    name: 'Backup Node',
    description: 'What a backup-node agent needs',
    privileges: [
      'NODE_READ',
      'NODE_WRITE',
      'NODE_CONFIG_READ',
      'VE_INSTANCE_READ',
      'VE_INSTANCE_UNMOUNT_TASK_REGISTER',
      'APP_INSTANCE_READ',
      'STORAGE_INSTANCE_READ',
      'BACKUP_DESTINATION_READ',
      'OS_CREDENTIAL_READ',
      'ENDPOINTS_SERVER_MANAGE',
    ],
  },
} as const;

export const BUILTIN_GROUPS = {
  globalAdministrators: {
    name: 'Global Administrators',
    description: 'All permissions',
    role: 'administrator',
  },
  operators: { name: 'Operator', description: 'Default group of directory users', role: 'operator' },
} as const;
