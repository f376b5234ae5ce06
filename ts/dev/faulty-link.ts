// A TCP relay for network faults: clients connect to it instead of the real ZooKeeper, and a test
// (or the chaos runner) cuts the link (every open connection reset, new ones refused) and restores
// it. Nothing is simulated: the client sees a real dropped connection, the server a real vanished client.
import net from 'node:net';

export class FaultyLink {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private cut = false;
  port = 0;

  private constructor(
    private readonly upstreamHost: string,
    private readonly upstreamPort: number,
  ) {
    this.server = net.createServer((client) => this.relay(client));
  }

  /** Relays 127.0.0.1:<free port> to `upstream` ("host:port"). */
  static async start(upstream: string): Promise<FaultyLink> {
    const [host, port] = upstream.split(':');
    const link = new FaultyLink(host!, Number(port));
    await new Promise<void>((resolve, reject) => {
      link.server.once('error', reject);
      link.server.listen(0, '127.0.0.1', () => resolve());
    });
    link.port = (link.server.address() as net.AddressInfo).port;
    return link;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private relay(client: net.Socket): void {
    if (this.cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.upstreamPort, this.upstreamHost);
    for (const s of [client, upstream]) {
      this.open.add(s);
      s.on('close', () => this.open.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  /** Cuts the link: open connections are reset, new ones refused until `restore`. */
  sever(): void {
    this.cut = true;
    for (const s of this.open) s.resetAndDestroy();
    this.open.clear();
  }

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.sever();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
