// Settings precedence (ts/cli/settings.ts): flag, then environment, then the settings file's
// section for the command, then its plain keys, then the default.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { applySettings, commandKey, envName, parseSettings, SettingsError, type SettingsFile } from './settings.js';

function program(): { root: Command; api: Command; server: Command } {
  const root = new Command('quark').exitOverride();
  const common = (c: Command) =>
    c.option('--zk <hosts>').option('--root <path>', 'root', '/quark').option('--config <file>');
  const api = common(root.command('api').option('--host <h>', 'bind', '127.0.0.1').option('--port <p>', 'port', '8080').option('--tls-cert <f>').option('--insecure', 'plain', false));
  const server = common(root.command('zk').command('server').option('--ensemble <list>').option('--myid <n>'));
  return { root, api, server };
}
const file = (o: Record<string, unknown>): SettingsFile => parseSettings('quark.json', JSON.stringify(o));

describe('settings', () => {
  it('names variables per command, shared flags without one', () => {
    const { api, server } = program();
    expect(commandKey(api)).toBe('api');
    expect(commandKey(server)).toBe('zk-server');
    expect(envName('api', 'tls-cert')).toBe('QUARK_API_TLS_CERT');
    expect(envName('api', 'zk')).toBe('QUARK_ZK');
    expect(envName('zk-server', 'ensemble')).toBe('QUARK_ZK_SERVER_ENSEMBLE');
    expect(envName('orc', 'session-timeout-ms')).toBe('QUARK_SESSION_TIMEOUT_MS');
  });

  it('flag over environment over section over plain key over default', () => {
    const settings = file({ zk: 'file-zk:2181', root: '/plain', host: '10.0.0.9', api: { host: '10.0.0.5', port: 8443, 'tls-cert': '/etc/quark/api.pem', insecure: true } });
    const { root, api } = program();
    root.parse(['api', '--port', '9000'], { from: 'user' });
    applySettings(api, { QUARK_API_TLS_CERT: '/env/cert.pem', QUARK_CONFIG: 'quark.json' }, () => settings);
    expect(api.opts()).toMatchObject({ port: '9000', tlsCert: '/env/cert.pem', host: '10.0.0.5', zk: 'file-zk:2181', root: '/plain', insecure: true });
    expect(api.getOptionValueSource('port')).toBe('cli');
    expect(api.getOptionValueSource('tlsCert')).toBe('env');
    expect(api.getOptionValueSource('host')).toBe('config');
  });

  it('no file and no variables: the defaults stand', () => {
    const { root, api } = program();
    root.parse(['api'], { from: 'user' });
    applySettings(api, {}, () => {
      throw new Error('no file was named');
    });
    expect(api.opts()).toMatchObject({ host: '127.0.0.1', port: '8080', insecure: false });
    expect(api.opts().zk).toBeUndefined();
  });

  it('--config names the file; a section key the command does not take is refused', () => {
    const { root, server } = program();
    root.parse(['zk', 'server', '--config', 'mine.json'], { from: 'user' });
    const seen: string[] = [];
    applySettings(server, { QUARK_CONFIG: 'other.json' }, (p) => {
      seen.push(p);
      return file({ 'zk-server': { ensemble: 'a,b,c', myid: 2 } });
    });
    expect(seen).toEqual(['mine.json']);
    expect(server.opts()).toMatchObject({ ensemble: 'a,b,c', myid: '2' });
    const typo = program();
    typo.root.parse(['zk', 'server'], { from: 'user' });
    expect(() => applySettings(typo.server, { QUARK_CONFIG: 'q.json' }, () => file({ 'zk-server': { ensembel: 'x' } }))).toThrow(/section "zk-server" sets ensembel/);
  });

  it('refuses a file that is not a JSON object of values and sections', () => {
    expect(() => parseSettings('q.json', '{')).toThrow(SettingsError);
    expect(() => parseSettings('q.json', '[1]')).toThrow(/expected a JSON object/);
    expect(() => parseSettings('q.json', '{"api": {"port": [1]}}')).toThrow(/api\.port must be/);
    expect(() => parseSettings('q.json', '{"zk": null}')).toThrow(/zk must be/);
  });
});
