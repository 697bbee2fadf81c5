// ConfigMaps and Secrets held in memory: the data side of the Store for env/volume tests.
import { core } from '@berth/api';
import type { ConfigSource } from '../seams';

export class MemoryConfigs implements ConfigSource {
  private readonly cms = new Map<string, core.ConfigMap>();
  private readonly secrets = new Map<string, core.Secret>();
  configMap(ns: string, name: string, data: Record<string, string>, binaryData: Record<string, Buffer> = {}): this {
    this.cms.set(`${ns}/${name}`, core.ConfigMap.fromPartial({ metadata: { name, namespace: ns }, data, binaryData }));
    return this;
  }
  secret(ns: string, name: string, data: Record<string, string | Buffer>): this {
    this.secrets.set(`${ns}/${name}`, core.Secret.fromPartial({ metadata: { name, namespace: ns }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)])) }));
    return this;
  }
  async getConfigMap(ns: string, name: string) { return this.cms.get(`${ns}/${name}`); }
  async getSecret(ns: string, name: string) { return this.secrets.get(`${ns}/${name}`); }
}
