// A real OpenID provider (the npm package oidc-provider) for the single
// sign-on tests: node oidc_provider.mjs PORT CLIENT_ID SECRET REDIRECT_URI.
// Its own development login pages take any password; two accounts:
// "alice" is in the registry's group "onboarding-staff", "bob" in none of it.
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const accounts = {
  alice: { email: 'alice@example.org', email_verified: true, groups: ['onboarding-staff', 'elsewhere'] },
  bob: { email: 'bob@example.org', email_verified: true, groups: ['sales'] },
};

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['pacsbin-integrations-tests-only'] },
  async findAccount(ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`listening on ${port}`));
