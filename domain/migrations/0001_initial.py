from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.outbox import OutboundStatus
from domain.people import StaffRole
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AuditLog',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(null=True)),
                ('entity', fields.CharField(max_length=32)),
                ('entity_id', fields.CharField(max_length=64)),
                ('action', fields.CharField(max_length=32)),
                ('from_state', fields.CharField(null=True, max_length=32)),
                ('to_state', fields.CharField(null=True, max_length=32)),
                ('actor', fields.CharField(max_length=64)),
                ('detail', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'audit_log', 'app': 'models', 'indexes': [Index(fields=['entity', 'entity_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Cinema',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=64)),
                ('city', fields.CharField(default='', max_length=32)),
                ('address', fields.CharField(default='', max_length=128)),
                ('phone', fields.CharField(default='', max_length=32)),
                ('latitude', fields.FloatField(null=True)),
                ('longitude', fields.FloatField(null=True)),
                ('opens_at', fields.CharField(default='09:00', max_length=5)),
                ('closes_at', fields.CharField(default='02:00', max_length=5)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cinema', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Film',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('title', fields.CharField(unique=True, max_length=64)),
                ('aliases', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('duration_min', fields.IntField()),
                ('genres', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('rating', fields.FloatField(null=True)),
                ('formats', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('synopsis', fields.TextField(default='', unique=False)),
                ('release_date', fields.DateField(null=True)),
            ],
            options={'table': 'film', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Hall',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='halls', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=16)),
                ('screen', fields.CharField(default='standard', max_length=16)),
                ('layout', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'hall', 'app': 'models', 'unique_together': (('cinema', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Member',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(unique=True, max_length=64)),
                ('nickname', fields.CharField(default='', max_length=64)),
                ('phone', fields.CharField(null=True, max_length=20)),
                ('tier', fields.CharField(default='regular', max_length=16)),
                ('subscribed', fields.BooleanField(default=False)),
                ('subscribe_scene', fields.CharField(null=True, max_length=64)),
                ('first_seen', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'member', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutboundMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.CharField(max_length=16)),
                ('recipient', fields.CharField(max_length=64)),
                ('payload', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('idempotency_key', fields.CharField(unique=True, max_length=128)),
                ('status', fields.CharEnumField(default=OutboundStatus.PENDING, description='PENDING: pending\nSENT: sent\nFAILED: failed\nDEAD: dead', enum_type=OutboundStatus, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.CharField(null=True, max_length=64)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbound_message', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Projector',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='projectors', on_delete=OnDelete.CASCADE)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='projectors', on_delete=OnDelete.CASCADE)),
                ('device_id', fields.CharField(unique=True, max_length=64)),
                ('key', fields.CharField(max_length=128)),
                ('model', fields.CharField(default='', max_length=64)),
                ('nominal_lumens', fields.IntField(null=True)),
            ],
            options={'table': 'projector', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Showtime',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='showtimes', on_delete=OnDelete.CASCADE)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='showtimes', on_delete=OnDelete.CASCADE)),
                ('film', fields.ForeignKeyField('models.Film', source_field='film_id', db_constraint=True, to_field='id', related_name='showtimes', on_delete=OnDelete.CASCADE)),
                ('starts_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('format', fields.CharField(default='2D', max_length=8)),
                ('base_price_fen', fields.IntField()),
            ],
            options={'table': 'showtime', 'app': 'models', 'unique_together': (('hall', 'starts_at'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Staff',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema', fields.ForeignKeyField('models.Cinema', source_field='cinema_id', db_constraint=True, to_field='id', related_name='staff', on_delete=OnDelete.CASCADE)),
                ('userid', fields.CharField(unique=True, max_length=64)),
                ('name', fields.CharField(max_length=32)),
                ('role', fields.CharEnumField(description='STAFF: staff\nENGINEER: engineer\nMANAGER: manager', enum_type=StaffRole, max_length=16)),
                ('phone', fields.CharField(null=True, max_length=20)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'staff', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
