/**
 * The firewall of an app host whose gateway web hosts elsewhere reach over TCP: an nftables table
 * of the app's own, so that only those web hosts reach the gateway's port. It touches nothing
 * else (other tables, ufw's rules stay as they are) and is loaded at boot by a oneshot unit,
 * before the app's socket listens. Pure; src/state/desired.ts adds the files.
 */
import { isIPv6 } from 'node:net';
import type { Environment } from '../inventory/resolve.js';
import type { Layout } from './layout.js';
import { GATEWAY_PORT, type Topology } from './topology.js';

export interface FirewallView {
  app: string;
  /** nft names take no dashes. */
  table: string;
  port: number;
  ipv4: string[];
  ipv6: string[];
  rulesFile: string;
  unit: string;
  socketUnit: string;
}

/** The unit that loads the app's table, and where its rules live. */
export function firewallFiles(app: string): { unit: string; rulesFile: string } {
  return { unit: `${app}-firewall.service`, rulesFile: `/etc/stack/${app}-firewall.nft` };
}

export function firewallView(env: Environment, _layout: Layout, topology: Topology): FirewallView {
  const { unit, rulesFile } = firewallFiles(env.app.name);
  return {
    app: env.app.name,
    table: `stack_${env.app.name.replace(/-/g, '_')}`,
    port: GATEWAY_PORT,
    ipv4: topology.gatewayClients.filter((a) => !isIPv6(a)),
    ipv6: topology.gatewayClients.filter((a) => isIPv6(a)),
    rulesFile,
    unit,
    socketUnit: `${env.app.name}.socket`,
  };
}

/** The rules as `nft -f` reads them: the table is made (if missing), emptied and filled in one transaction. */
export function firewallRules(v: FirewallView): string {
  const allow = [
    ...(v.ipv4.length ? [`        tcp dport ${v.port} ip saddr { ${v.ipv4.join(', ')} } accept`] : []),
    ...(v.ipv6.length ? [`        tcp dport ${v.port} ip6 saddr { ${v.ipv6.join(', ')} } accept`] : []),
  ];
  return [
    `# Managed by stack for ${v.app}: only the web hosts reach the gateway on port ${v.port}.`,
    // `table` then `delete table`: works whether or not it exists, so loading it twice is the same as once.
    `table inet ${v.table}`,
    `delete table inet ${v.table}`,
    `table inet ${v.table} {`,
    '    chain input {',
    '        type filter hook input priority filter; policy accept;',
    ...allow,
    `        tcp dport ${v.port} drop`,
    '    }',
    '}',
    '',
  ].join('\n');
}

/** The oneshot unit that loads the rules at boot, before the app's socket listens on the port. */
export function firewallUnit(v: FirewallView): string {
  return [
    `# Managed by stack for ${v.app}: edit the inventory, not this file.`,
    '[Unit]',
    `Description=${v.app}: only the web hosts reach the gateway (nftables)`,
    // Early, like the socket it guards: no default dependencies, which would order it after it.
    'DefaultDependencies=no',
    'After=local-fs.target',
    `Before=${v.socketUnit} sockets.target shutdown.target`,
    'Conflicts=shutdown.target',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=/usr/sbin/nft -f ${v.rulesFile}`,
    `ExecStop=/usr/sbin/nft delete table inet ${v.table}`,
    '',
    '[Install]',
    `WantedBy=sockets.target`,
    '',
  ].join('\n');
}
