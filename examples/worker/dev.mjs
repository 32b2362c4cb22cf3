// `npm run dev`: runs this Worker locally in workerd through Miniflare's API (the `miniflare` command has
// no CLI any more), with the Durable Object's storage kept in .state/ so that a restart finds its tunnel.
//
//   TUNNEL_SERVER=http://localhost:3000 PORT=8787 npm run dev
import { loadMiniflare, options } from './miniflare.mjs';

const { Miniflare } = loadMiniflare();
const server = process.env.TUNNEL_SERVER ?? 'http://localhost:3000';
const port = Number(process.env.PORT ?? 8787);
const mf = new Miniflare(options({ server, persist: new URL('./.state', import.meta.url).pathname, port }));
const url = await mf.ready;
console.log(`${url.href.replace(/\/$/, '')}  (tunnel server ${server})`);
console.error(`GET ${url.href}start?subdomain=NAME opens the tunnel, /status shows it, /stop closes it`);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await mf.dispose();
    process.exit(0);
  });
}
