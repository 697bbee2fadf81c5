// CertificateSigningRequest rules: parsing, the kubelet client request rule (table), validation
// with field paths, and the self-signature check on real keys.
import { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { KUBELET_CLIENT_SIGNER, csrConditionText, generateKeyAndCsr, kubeletServingRequest, nodeClientRequest, parseCsr, verifyCsrSignature } from './certificates';
import { ValidationError, validateObject } from './validation';
import { decodeObject } from './codec';

const spec = (o: Partial<core.CertificateSigningRequestSpec> = {}) => core.CertificateSigningRequestSpec.fromPartial({ signerName: KUBELET_CLIENT_SIGNER, usages: ['client auth', 'digital signature', 'key encipherment'], ...o });

describe('nodeClientRequest', () => {
  const cases: { name: string; cn: string; orgs: string[]; spec?: Partial<core.CertificateSigningRequestSpec>; want: string }[] = [
    { name: 'a node', cn: 'system:node:n1', orgs: ['system:nodes'], want: 'node n1' },
    { name: 'client auth alone', cn: 'system:node:n1', orgs: ['system:nodes'], spec: { usages: ['client auth'] }, want: 'node n1' },
    { name: 'wrong group', cn: 'system:node:n1', orgs: ['system:masters'], want: 'subject O must be exactly system:nodes' },
    { name: 'extra group', cn: 'system:node:n1', orgs: ['system:nodes', 'system:masters'], want: 'subject O must be exactly system:nodes' },
    { name: 'no group', cn: 'system:node:n1', orgs: [], want: 'subject O must be exactly system:nodes' },
    { name: 'not a node name', cn: 'alice', orgs: ['system:nodes'], want: 'subject CN must be system:node:<node name>' },
    { name: 'empty node name', cn: 'system:node:', orgs: ['system:nodes'], want: 'subject CN must be system:node:<node name>' },
    { name: 'server usage', cn: 'system:node:n1', orgs: ['system:nodes'], spec: { usages: ['client auth', 'server auth'] }, want: 'usages not allowed for a node client certificate: server auth' },
    { name: 'no client auth', cn: 'system:node:n1', orgs: ['system:nodes'], spec: { usages: ['digital signature'] }, want: 'usages must include "client auth"' },
    { name: 'another signer', cn: 'system:node:n1', orgs: ['system:nodes'], spec: { signerName: 'kubernetes.io/kube-apiserver-client' }, want: 'signerName is kubernetes.io/kube-apiserver-client' },
  ];
  it.each(cases)('$name', async (c) => {
    const { csrPem } = await generateKeyAndCsr({ commonName: c.cn, organizations: c.orgs });
    const r = nodeClientRequest(spec(c.spec), parseCsr(csrPem));
    expect('node' in r ? `node ${r.node}` : r.reason).toContain(c.want);
  });
});

describe('kubeletServingRequest', () => {
  const serving = (o: Partial<core.CertificateSigningRequestSpec> = {}) => spec({ signerName: 'kubernetes.io/kubelet-serving', usages: ['server auth', 'digital signature'], ...o });
  it.each([
    ['DNS and IP names', { dnsNames: ['n1'], ipAddresses: ['10.0.0.1'] }, {}, 'node n1'],
    ['no names', {}, {}, 'needs at least one DNS or IP subjectAltName'],
    ['client usage', { dnsNames: ['n1'] }, { usages: ['server auth', 'client auth'] }, 'usages not allowed for a kubelet serving certificate: client auth'],
    ['no server auth', { dnsNames: ['n1'] }, { usages: ['digital signature'] }, 'usages must include "server auth"'],
  ] as const)('%s', async (_n, names, o, want) => {
    const { csrPem } = await generateKeyAndCsr({ commonName: 'system:node:n1', organizations: ['system:nodes'], ...names });
    const r = kubeletServingRequest(serving(o as Partial<core.CertificateSigningRequestSpec>), parseCsr(csrPem));
    expect('node' in r ? `node ${r.node}` : r.reason).toContain(want);
  });
});

describe('parseCsr and the signature', () => {
  it('reads the subject and checks the proof of possession', async () => {
    const { csrPem } = await generateKeyAndCsr({ commonName: 'system:node:a,b', organizations: ['system:nodes'] });
    const p = parseCsr(Buffer.from(csrPem));
    expect(p.commonName).toBe('system:node:a,b');
    expect(p.organizations).toEqual(['system:nodes']);
    expect(await verifyCsrSignature(p)).toBe(true);
    // The same request with one letter of the subject changed: the signature no longer matches.
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf('system:node:a,b');
    expect(at).toBeGreaterThan(0);
    der[at + 12] = 'z'.charCodeAt(0);
    const forged = parseCsr(`-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`);
    expect(forged.commonName).toBe('system:node:z,b');
    const ok = await verifyCsrSignature(forged);
    expect(ok).toBe(false);
  });
  it.each([
    ['empty', '', 'spec.request: Required value'],
    ['not PEM', 'hello', 'PEM block type must be CERTIFICATE REQUEST'],
    ['a certificate', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'PEM block type must be CERTIFICATE REQUEST'],
    ['garbage inside', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 'spec.request: Invalid value'],
  ])('refuses %s', (_n, pem, want) => {
    expect(() => parseCsr(pem)).toThrow(want);
  });
});

describe('CertificateSigningRequest validation', () => {
  const obj = async (s: Record<string, unknown>, status?: Record<string, unknown>) => {
    const { csrPem } = await generateKeyAndCsr({ commonName: 'system:node:n1', organizations: ['system:nodes'] });
    return decodeObject({ apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name: 'c' }, spec: { request: Buffer.from(csrPem).toString('base64'), signerName: KUBELET_CLIENT_SIGNER, usages: ['client auth'], ...s }, ...(status ? { status } : {}) });
  };
  const errors = (o: core.Object) => { try { validateObject(o); return []; } catch (e) { return (e as ValidationError).errors.map((x) => x.field); } };
  it.each([
    ['valid', {}, undefined, []],
    ['no signer', { signerName: '' }, undefined, ['spec.signerName']],
    ['bad signer', { signerName: 'no-slash' }, undefined, ['spec.signerName']],
    ['no usages', { usages: [] }, undefined, ['spec.usages']],
    ['unknown usage', { usages: ['client auth', 'flying'] }, undefined, ['spec.usages[1]']],
    ['duplicate usage', { usages: ['client auth', 'client auth'] }, undefined, ['spec.usages[1]']],
    ['short expiration', { expirationSeconds: 60 }, undefined, ['spec.expirationSeconds']],
    ['approved and denied', {}, { conditions: [{ type: 'Approved', status: 'True' }, { type: 'Denied', status: 'True' }] }, ['status.conditions']],
    ['approved False', {}, { conditions: [{ type: 'Approved', status: 'False' }] }, ['status.conditions[0].status']],
    ['certificate unapproved', {}, { certificate: Buffer.from('-----BEGIN CERTIFICATE-----\n').toString('base64') }, ['status.certificate']],
  ] as const)('%s', async (_n, s, status, want) => {
    expect(errors(await obj(s as Record<string, unknown>, status as Record<string, unknown> | undefined))).toEqual(want);
  });
  it('prints the condition column like kubectl', () => {
    const c = (conds: string[], cert = false) => core.CertificateSigningRequest.fromPartial({ status: { conditions: conds.map((type) => ({ type, status: 'True' })), certificate: cert ? Buffer.from('x') : Buffer.alloc(0) } });
    expect(csrConditionText(c([]))).toBe('Pending');
    expect(csrConditionText(c(['Approved'], true))).toBe('Approved,Issued');
    expect(csrConditionText(c(['Denied']))).toBe('Denied');
  });
});
