/**
 * The firewall of a host that others reach on its private address: an app host whose gateway web
 * hosts elsewhere reach over TCP, and the db host whose PostgreSQL app and worker hosts elsewhere
 * reach. One nftables table of the app's own per host: each guarded address and port lets in only
 * those hosts (and the host itself); the table touches nothing else (other tables, ufw's rules,
 * the same port on other addresses stay as they are). A oneshot unit loads it at boot, before the
 * app's socket listens, and again whenever Debian's nftables.service (re)loads its ruleset, which
 * starts with `flush ruleset`. Pure; src/state/desired.ts adds the files.
 */
import { isIPv6 } from 'node:net';
import type { Environment } from '../inventory/resolve.js';
import type { Layout } from './layout.js';
import { GATEWAY_PORT, POSTGRES_PORT, type Topology } from './topology.js';

/** One address and port of this host that only some hosts may reach. */
export interface Guard {
  /** What listens there, for the comments: "the gateway", "PostgreSQL". */
  what: string;
  /** Who may reach it, for the comments: "the web hosts". */
  who: string;
  /** This host's private address, where it listens. */
  address: string;
  port: number;
  /** Who may connect: this host's own address first (it reaches itself there: the health check), then the others, of the same family. */
  clients: string[];
}

export interface FirewallView {
  app: string;
  /** nft names take no dashes. */
  table: string;
  guards: Guard[];
  rulesFile: string;
  unit: string;
  /** The gateway's socket, which listens only once the firewall is loaded; null without a gateway guard. */
  socketUnit: string | null;
}

/** The unit that loads the app's table, and where its rules live. */
export function firewallFiles(app: string): { unit: string; rulesFile: string } {
  return { unit: `${app}-firewall.service`, rulesFile: `/etc/stack/${app}-firewall.nft` };
}

/** What this host guards: nothing (no firewall) when nobody elsewhere reaches it. */
export function firewallGuards(env: Environment, topology: Topology): Guard[] {
  const own = topology.privateAddress;
  // A client of the other family cannot reach this address at all; a rule mixing `ip daddr` with
  // `ip6 saddr` would never match either.
  const sameFamily = (clients: string[]) => [...new Set([own, ...clients.filter((a) => isIPv6(a) === isIPv6(own))])];
  const guards: Guard[] = [];
  if (topology.app && topology.gatewayClients.length > 0)
    guards.push({ what: 'the gateway', who: 'the web hosts', address: own, port: GATEWAY_PORT, clients: sameFamily(topology.gatewayClients) });
  if (env.database && topology.db && topology.dbClients.length > 0)
    guards.push({ what: 'PostgreSQL', who: 'the app and worker hosts', address: own, port: POSTGRES_PORT, clients: sameFamily(topology.dbClients) });
  return guards;
}

export function firewallView(env: Environment, _layout: Layout, topology: Topology): FirewallView {
  const { unit, rulesFile } = firewallFiles(env.app.name);
  const guards = firewallGuards(env, topology);
  return {
    app: env.app.name,
    table: `stack_${env.app.name.replace(/-/g, '_')}`,
    guards,
    rulesFile,
    unit,
    socketUnit: guards.some((g) => g.port === GATEWAY_PORT) ? `${env.app.name}.socket` : null,
  };
}

function summary(v: FirewallView): string {
  return v.guards.map((g) => `only ${g.who} reach ${g.what}`).join(', ');
}

/** The rules as `nft -f` reads them: the table is made (if missing), emptied and filled in one transaction. */
export function firewallRules(v: FirewallView): string {
  const rules = v.guards.flatMap((g) => {
    const ip = isIPv6(g.address) ? 'ip6' : 'ip';
    // Only traffic to this address and port: the same port on 127.0.0.1 or another address is
    // none of this table's business.
    const match = `${ip} daddr ${g.address} tcp dport ${g.port}`;
    return [
      `        # ${g.what} on ${g.address} port ${g.port}: ${g.who}, and this host itself.`,
      `        ${match} ${ip} saddr { ${g.clients.join(', ')} } accept`,
      `        ${match} drop`,
    ];
  });
  return [
    `# Managed by stack for ${v.app}: ${summary(v)}.`,
    // `table` then `delete table`: works whether or not it exists, so loading it twice is the same as once.
    `table inet ${v.table}`,
    `delete table inet ${v.table}`,
    `table inet ${v.table} {`,
    '    chain input {',
    '        type filter hook input priority filter; policy accept;',
    // A connection from this host to itself arrives on lo (whichever of its addresses it goes
    // to): its own health check and local clients are never dropped. Accepting here ends only
    // this table's chain; other tables still judge the packet.
    '        iif lo accept',
    ...rules,
    '    }',
    '}',
    '',
  ].join('\n');
}

/**
 * The oneshot unit that loads the rules at boot, before the app's socket listens on the port. It
 * follows Debian's nftables.service, whose ruleset begins with `flush ruleset` and would take
 * this table away: after it at boot, restarted with it (PartOf=), reloaded with it
 * (ReloadPropagatedFrom=; PartOf= passes on no reload), stopped with it. The socket requires this
 * unit, so a table that is not loaded stops the gateway rather than leave it open.
 */
export function firewallUnit(v: FirewallView): string {
  return [
    `# Managed by stack for ${v.app}: edit the inventory, not this file.`,
    '[Unit]',
    `Description=${v.app}: ${summary(v)} (nftables)`,
    // Early, like the socket it guards: no default dependencies, which would order it after it.
    // PostgreSQL (default dependencies) starts after sockets.target, so after this too.
    'DefaultDependencies=no',
    'After=local-fs.target nftables.service',
    `Before=${v.socketUnit ? `${v.socketUnit} ` : ''}sockets.target shutdown.target`,
    'Conflicts=shutdown.target',
    'PartOf=nftables.service',
    'ReloadPropagatedFrom=nftables.service',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=/usr/sbin/nft -f ${v.rulesFile}`,
    // Loading the file again replaces the table in one transaction: a new rule set takes effect
    // without a restart, which Requires= would pass on to the socket and the app.
    `ExecReload=/usr/sbin/nft -f ${v.rulesFile}`,
    // The table may be gone already (nftables.service stopped: flush ruleset).
    `ExecStop=-/usr/sbin/nft delete table inet ${v.table}`,
    '',
    '[Install]',
    // Also pulled in when nftables.service starts (it is enabled: started at boot, then this).
    'WantedBy=sockets.target nftables.service',
    '',
  ].join('\n');
}
